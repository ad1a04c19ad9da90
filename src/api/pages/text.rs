//! The pages' words, in Japanese and English, and which language a request gets.
//!
//! Templates read them as `t.<key>`; a bank that overrides a template can use the same keys or
//! write its own words.

use std::collections::BTreeMap;

/// A page's language: Japanese unless the request asks for English.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lang {
    Ja,
    En,
}

impl Lang {
    /// `?lang=en|ja` first, then the first of the two that `Accept-Language` prefers, else Japanese.
    pub(super) fn of(parts: &http::request::Parts) -> Self {
        Self::of_head(&parts.uri, &parts.headers)
    }

    /// Like [`Self::of`], from a request's URI and headers.
    pub(super) fn of_head(uri: &http::Uri, headers: &http::HeaderMap) -> Self {
        let asked = uri.query().and_then(|query| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == "lang")
                .and_then(|(_, value)| Self::named(&value))
        });
        asked
            .or_else(|| {
                let header = headers.get(http::header::ACCEPT_LANGUAGE)?;
                Self::preferred(header.to_str().ok()?)
            })
            .unwrap_or(Self::Ja)
    }

    fn named(tag: &str) -> Option<Self> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "ja" => Some(Self::Ja),
            "en" => Some(Self::En),
            _ => None,
        }
    }

    /// The language of the highest `q` among Japanese and English (the first on a tie).
    fn preferred(header: &str) -> Option<Self> {
        let mut best: Option<(u16, Self)> = None;
        for entry in header.split(',') {
            let mut fields = entry.split(';');
            let Some(lang) = fields.next().and_then(Self::named) else {
                continue;
            };
            let quality = fields
                .find_map(|field| field.trim().strip_prefix("q="))
                .map_or(1000, parse_quality);
            if quality > 0 && best.is_none_or(|(seen, _)| quality > seen) {
                best = Some((quality, lang));
            }
        }
        best.map(|(_, lang)| lang)
    }

    /// The `lang` attribute and query value.
    pub(super) fn code(self) -> &'static str {
        match self {
            Self::Ja => "ja",
            Self::En => "en",
        }
    }

    /// The other language, for the switch on every page.
    pub(super) fn other(self) -> Self {
        match self {
            Self::Ja => Self::En,
            Self::En => Self::Ja,
        }
    }

    /// Every word of the pages in this language.
    pub(super) fn words(self) -> BTreeMap<&'static str, &'static str> {
        WORDS
            .iter()
            .map(|(key, ja, en)| (*key, if self == Self::Ja { *ja } else { *en }))
            .collect()
    }

    /// One word (a key of [`WORDS`]); the key itself if it is not one.
    pub(super) fn word(self, key: &'static str) -> &'static str {
        WORDS
            .iter()
            .find(|(name, _, _)| *name == key)
            .map_or(key, |(_, ja, en)| if self == Self::Ja { ja } else { en })
    }
}

/// `q=0.8` in thousandths; anything unreadable counts as 0 (not acceptable).
fn parse_quality(text: &str) -> u16 {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let whole: u16 = match whole {
        "0" => 0,
        "1" => 1000,
        _ => return 0,
    };
    let digits: String = fraction.chars().take(3).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return 0;
    }
    let padded = format!("{digits:0<3}");
    (whole + padded.parse::<u16>().unwrap_or(0)).min(1000)
}

/// (key, Japanese, English).
const WORDS: &[(&str, &str, &str)] = &[
    (
        "service",
        "インターネットバンキング 電子証明書",
        "Internet banking certificates",
    ),
    ("switch", "English", "日本語"),
    ("back", "戻る", "Back"),
    // Certificate details.
    ("o", "組織名 (O)", "Organization (O)"),
    ("ou", "部署名 (OU)", "Organizational unit (OU)"),
    ("cn", "名前 (CN)", "Common name (CN)"),
    ("serial", "シリアル番号", "Serial number"),
    ("not_after", "有効期限", "Valid until"),
    ("status", "状態", "Status"),
    ("days_left", "残り日数", "Days left"),
    ("renewal_opens", "更新開始日", "Renewal opens"),
    ("status_issued", "発行済み", "issued"),
    ("status_renewable", "更新可", "renewable"),
    ("status_expired", "期限切れ", "expired"),
    ("status_revoked", "失効", "revoked"),
    ("status_renewed", "更新済み", "renewed"),
    ("status_unissued", "未発行", "unissued"),
    ("status_external", "他の認証局の証明書", "from another CA"),
    // Enrollment (電子証明書取得).
    ("enroll_title", "電子証明書取得", "Get your certificate"),
    (
        "enroll_intro",
        "企業ID、利用者ID（管理者の方は空欄）と仮暗証番号を入力し、証明書ファイルのパスワードを決めてください。管理者の方が先に取得してください。",
        "Enter your corporation ID, your user ID (leave it empty if you are the administrator) and your temporary PIN, and choose a password for the certificate file. The administrator gets theirs first.",
    ),
    ("corp_id", "企業ID", "Corporation ID"),
    (
        "user_id",
        "利用者ID（管理者の方は空欄）",
        "User ID (empty for the administrator)",
    ),
    ("pin", "仮暗証番号", "Temporary PIN"),
    (
        "p12_password",
        "証明書ファイルのパスワード（8文字以上）",
        "Password of the certificate file (8 characters or more)",
    ),
    (
        "p12_password_again",
        "証明書ファイルのパスワード（確認）",
        "The same password again",
    ),
    ("enroll_submit", "取得する", "Get the certificate"),
    (
        "enrolled_title",
        "電子証明書を取得しました",
        "Your certificate is ready",
    ),
    (
        "enrolled_intro",
        "次の電子証明書を発行しました。証明書ファイルをダウンロードしてインポートしてください。",
        "This certificate was issued to you. Download the certificate file and import it.",
    ),
    (
        "download",
        "証明書ファイル (certificate.p12) をダウンロード",
        "Download the certificate file (certificate.p12)",
    ),
    ("import_title", "インポートの手順", "How to import it"),
    (
        "import_step1",
        "ダウンロードした certificate.p12 を開くと、Windows の「証明書のインポート ウィザード」が始まります。",
        "Open the downloaded certificate.p12: Windows starts its Certificate Import Wizard.",
    ),
    (
        "import_step2",
        "画面に従って進み、パスワードには先ほど決めた証明書ファイルのパスワードを入力します。",
        "Follow its steps; when it asks for the password, enter the certificate file's password you chose.",
    ),
    (
        "import_step3",
        "インポートが終わったら、開いているブラウザをすべて閉じてから、改めてログインしてください。",
        "When it is done, close every browser window, then log in again.",
    ),
    // Renewal (電子証明書更新).
    ("renew_title", "電子証明書更新", "Renew your certificate"),
    (
        "renew_not_open",
        "この電子証明書の更新は次の日時から可能です：",
        "This certificate can be renewed from:",
    ),
    (
        "renew_not_possible",
        "この電子証明書は更新できません。",
        "This certificate cannot be renewed.",
    ),
    (
        "renew_confirm",
        "次の電子証明書を更新します。新しい証明書ファイルのパスワードを決めて「実行」を押してください。",
        "This certificate will be renewed. Choose a password for the new certificate file and press Execute.",
    ),
    ("execute", "実行", "Execute"),
    ("cancel", "中止", "Cancel"),
    (
        "renew_cancelled_title",
        "電子証明書更新中断",
        "Renewal interrupted",
    ),
    (
        "renew_cancelled",
        "電子証明書の更新を中断しました。証明書は変わっていません。",
        "The renewal was interrupted; your certificate has not changed.",
    ),
    (
        "renewed_title",
        "電子証明書を更新しました",
        "Your certificate was renewed",
    ),
    (
        "renewed_note",
        "古い電子証明書はブラウザに残りますが、もう使えません。不要であれば手動で削除してください。新しい証明書ファイルをインポートした後、ブラウザをすべて閉じて、新しい証明書で改めてログインしてください。",
        "The old certificate stays installed in your browser but is no longer used; you may delete it by hand. After importing the new certificate file, close every browser window and log in again with the new certificate.",
    ),
    // The renewal notice (電子証明書更新のお知らせ).
    (
        "notice_title",
        "電子証明書更新のお知らせ",
        "Certificate renewal notice",
    ),
    (
        "notice_intro",
        "ご利用中の電子証明書の有効期限が近づいています。有効期限までに更新してください。",
        "Your certificate expires soon. Renew it before it expires.",
    ),
    (
        "notice_remind",
        "次回ログイン時にもこのお知らせを表示する",
        "Remind me at the next login",
    ),
    ("next", "次へ", "Next"),
    // One's own certificate.
    ("me_title", "電子証明書情報", "Your certificate"),
    ("renew_now", "今すぐ更新する", "Renew now"),
    ("history", "操作履歴", "Operation history"),
    ("at", "日時", "When"),
    ("action", "操作", "Action"),
    ("target", "対象", "Target"),
    ("result", "結果", "Result"),
    ("actor", "操作者", "By"),
    ("no_history", "操作履歴はありません。", "No operations yet."),
    // User management (利用者管理).
    ("admin_title", "利用者管理", "User management"),
    ("login_id", "ログインID", "Login ID"),
    ("user_name", "利用者名", "Name"),
    ("role", "権限", "Role"),
    ("actions", "操作", "Actions"),
    ("user_suspended", "利用停止中", "suspended"),
    ("reissue", "再発行", "Re-issue"),
    ("suspend", "利用停止", "Suspend"),
    ("resume", "利用再開", "Resume"),
    ("add_user", "利用者の追加", "Add a user"),
    ("role_master", "マスターユーザ", "master user"),
    ("role_admin", "管理者ユーザ", "admin user"),
    ("role_general", "一般ユーザ", "general user"),
    ("email", "メールアドレス", "E-mail"),
    ("add", "追加する", "Add"),
    ("filter", "絞り込む", "Filter"),
    (
        "reissued_title",
        "電子証明書を再発行しました",
        "Certificate re-issued",
    ),
    ("reissued_pin", "新しい仮暗証番号", "New temporary PIN"),
    (
        "pin_valid_until",
        "仮暗証番号の有効期限",
        "Temporary PIN valid until",
    ),
    (
        "reissued_note",
        "仮暗証番号はこの画面でのみ表示されます。利用者に伝えてください。利用者はこの仮暗証番号で電子証明書を取得し直します。",
        "The temporary PIN is shown only here: pass it to the user, who enrolls again with it.",
    ),
    ("err_role", "権限を選んでください。", "Choose a role."),
    ("edit", "変更", "Edit"),
    ("edit_user", "利用者情報の変更", "Change a user"),
    ("save", "保存する", "Save"),
    // Revocation (失効) with the confirmation password (確認用パスワード).
    ("revoke", "失効", "Revoke"),
    ("revoke_title", "電子証明書の失効", "Revoke a certificate"),
    (
        "revoke_confirm",
        "次の利用者の電子証明書を失効させます。失効すると元に戻せません。",
        "The certificate of this user will be revoked. This cannot be undone.",
    ),
    ("reason", "失効理由", "Reason"),
    ("reason_unspecified", "指定なし", "unspecified"),
    ("reason_key_compromise", "秘密鍵の漏えい", "key compromise"),
    (
        "reason_affiliation_changed",
        "所属の変更",
        "affiliation changed",
    ),
    ("reason_superseded", "置き換え", "superseded"),
    ("reason_cessation", "利用終了", "cessation of operation"),
    ("confirmation", "確認用パスワード", "Confirmation password"),
    (
        "confirmation_again",
        "確認用パスワード（確認）",
        "Confirmation password again",
    ),
    (
        "set_confirmation_intro",
        "失効には確認用パスワードが必要です。はじめに、ご自身の確認用パスワード（8文字以上）を設定してください。",
        "Revoking needs your confirmation password. First set your own (8 characters or more).",
    ),
    ("set_confirmation", "設定する", "Set"),
    (
        "confirmation_set",
        "確認用パスワードを設定しました。",
        "Your confirmation password is set.",
    ),
    (
        "revoked_title",
        "電子証明書を失効しました",
        "Certificate revoked",
    ),
    ("cancel_back", "中止して戻る", "Cancel"),
    (
        "err_confirmation_short",
        "確認用パスワードは8文字以上にしてください。",
        "The confirmation password must have at least 8 characters.",
    ),
    (
        "err_confirmation_differs",
        "確認用パスワードが一致しません。",
        "The two confirmation passwords differ.",
    ),
    (
        "err_confirmation_wrong",
        "確認用パスワードが正しくありません。",
        "The confirmation password is wrong.",
    ),
    (
        "err_confirmation_locked",
        "確認用パスワードは誤入力が続いたためロックされました。銀行に解除を依頼してください。",
        "Your confirmation password is locked after too many wrong tries. Ask the bank to reset it.",
    ),
    (
        "err_confirmation_required",
        "確認用パスワードを入力してください。",
        "Enter your confirmation password.",
    ),
    (
        "err_reason",
        "失効理由を選んでください。",
        "Choose a reason.",
    ),
    // Refusals.
    (
        "err_cross_site",
        "このフォームは他のサイトから送信されたため受け付けられません。この画面から入力し直してください。",
        "This form was sent from another site and was not accepted. Enter it again on this page.",
    ),
    (
        "err_token",
        "フォームの有効期限が切れたか、正しくありません。もう一度入力してください。",
        "This form has expired or is not valid. Please enter it again.",
    ),
    ("err_required", "を入力してください。", " is required."),
    (
        "err_id_format",
        "は半角英数字30文字以内で入力してください。",
        " must be 1 to 30 letters and digits (ASCII).",
    ),
    ("err_too_long", "が長すぎます。", " is too long."),
    (
        "err_password_short",
        "証明書ファイルのパスワードは8文字以上にしてください。",
        "The certificate file's password must have at least 8 characters.",
    ),
    (
        "err_password_differs",
        "証明書ファイルのパスワードが一致しません。",
        "The two passwords differ.",
    ),
    (
        "err_credentials",
        "企業ID、利用者ID または仮暗証番号が正しくありません。",
        "The corporation ID, user ID or PIN is wrong.",
    ),
    (
        "err_locked",
        "仮暗証番号の誤入力が続いたため、この仮暗証番号はロックされました。新しい仮暗証番号を依頼してください。",
        "This temporary PIN is locked after too many wrong entries. Ask for a new temporary PIN.",
    ),
    (
        "err_admin_first",
        "管理者の電子証明書がまだ取得されていません。管理者の方が先に取得してください。",
        "The administrator has no certificate yet. The administrator gets theirs first.",
    ),
    (
        "err_expired_pin",
        "仮暗証番号の有効期限が切れています。新しい仮暗証番号を依頼してください。",
        "The temporary PIN has expired. Ask for a new one.",
    ),
    (
        "err_used_pin",
        "この仮暗証番号は使用済みです。",
        "This temporary PIN was already used.",
    ),
    (
        "err_too_many",
        "試行回数が多すぎます。しばらくしてからやり直してください。",
        "Too many attempts. Please try again later.",
    ),
    (
        "err_other",
        "処理できませんでした：",
        "This could not be done:",
    ),
    (
        "err_busy",
        "ただいま混み合っています。しばらくしてからやり直してください。",
        "The service is busy. Please try again shortly.",
    ),
    (
        "err_form_type",
        "フォームの形式が正しくありません。",
        "The form was not sent as a web form.",
    ),
    (
        "certificate_needed_title",
        "電子証明書が必要です",
        "A certificate is needed",
    ),
    (
        "certificate_needed",
        "この画面は電子証明書でログインしてから開いてください。",
        "Open this page with your certificate installed and selected in the browser.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn lang(query: &str, accept: Option<&str>) -> Lang {
        let mut request = http::Request::get(format!("/certgate/enroll{query}"));
        if let Some(accept) = accept {
            request = request.header("accept-language", accept);
        }
        Lang::of(&request.body(()).unwrap().into_parts().0)
    }

    #[test]
    fn japanese_unless_english_is_asked_for() {
        assert_eq!(lang("", None), Lang::Ja);
        assert_eq!(lang("", Some("fr-FR, de")), Lang::Ja);
        assert_eq!(lang("", Some("en-US,en;q=0.9")), Lang::En);
        assert_eq!(lang("", Some("ja,en;q=0.8")), Lang::Ja);
        assert_eq!(lang("", Some("en;q=0.5, ja;q=0.9")), Lang::Ja);
        assert_eq!(lang("", Some("fr, en;q=0.3")), Lang::En);
        assert_eq!(lang("", Some("en;q=0")), Lang::Ja);
        assert_eq!(lang("?lang=en", Some("ja")), Lang::En);
        assert_eq!(lang("?lang=ja", Some("en")), Lang::Ja);
        assert_eq!(lang("?lang=xx", Some("en")), Lang::En);
    }

    #[test]
    fn both_languages_have_every_word() {
        for (key, ja, en) in WORDS {
            assert!(!ja.is_empty() && !en.is_empty(), "{key}");
        }
        let keys: std::collections::BTreeSet<_> = WORDS.iter().map(|(key, _, _)| key).collect();
        assert_eq!(keys.len(), WORDS.len(), "a key is listed twice");
    }
}
