// certgate's pages in a real Chromium, as the bank's customers use them (run by
// tests/suite/browser.rs, which starts certgate and seeds the registry). Every step asserts what
// a person would see; every page is photographed in Japanese and English into SHOTS.
//
// The administrator enrolls → downloads certificate.p12 → a fresh browser context with it opens
// the application through certgate, whose echo shows the identity; the administrator adds a user
// on the admin page and re-issues (the PIN shown once); the user enrolls the same way, meets the
// renewal notice, defers it, renews (Cancel first, then Execute) → the new certificate works →
// the administrator revokes the user with their confirmation password → the user is refused.
//
// Environment: BASE (https://localhost:PORT), CORP, ADMIN_PIN, USER_ID, SHOTS (a
// directory), CHROMIUM (default /usr/bin/chromium). Prints one JSON line of what it saw.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};
const BASE = env('BASE');
const CORP = env('CORP');
const USER = env('USER_ID');
const SHOTS = env('SHOTS');
const PASSWORD = 'browser-password-1';
fs.mkdirSync(SHOTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  args: ['--no-sandbox'],
});
const seen = {};

/// A context without a certificate, or with the PKCS#12 file at `pfx`.
async function context(pfx) {
  return browser.newContext({
    ignoreHTTPSErrors: true,
    acceptDownloads: true,
    // The bank's customers' browsers ask for Japanese (Chromium's own default is en-US).
    locale: 'ja-JP',
    clientCertificates: pfx ? [{ origin: BASE, pfxPath: pfx, passphrase: PASSWORD }] : [],
  });
}

/// Photographs the page as it is, then in the other language through its switch, and back.
async function shoot(page, name) {
  const lang = await page.getAttribute('html', 'lang');
  await page.screenshot({ path: path.join(SHOTS, `${name}-${lang}.png`), fullPage: true });
}

/// Photographs a page that a GET shows in both languages: as it is, then through its language
/// switch, then goes back to it (by its address: certgate's pages are never cached).
async function bothLanguages(page, name) {
  await shoot(page, name);
  const url = page.url();
  const other = await page.getAttribute('#lang-switch', 'hreflang');
  await page.click('#lang-switch');
  assert.equal(await page.getAttribute('html', 'lang'), other);
  await shoot(page, name);
  await page.goto(url);
}

/// Enrolls on /certgate/enroll (in Japanese, the browser's language, unless `lang` says
/// otherwise), keeps certificate.p12, returns its path and the page.
async function enroll(who, corp, user, pin, lang = 'ja') {
  const ctx = await context();
  const page = await ctx.newPage();
  await page.goto(lang === 'ja' ? `${BASE}/certgate/enroll` : `${BASE}/certgate/enroll?lang=${lang}`);
  assert.equal(await page.getAttribute('html', 'lang'), lang);
  if (lang === 'ja') await bothLanguages(page, 'enroll');
  // A wrong PIN first: the form again, with the generic refusal and the IDs kept.
  await page.fill('#corp_id', corp);
  if (user) await page.fill('#user_id', user);
  await page.fill('#pin', 'WRONG-PIN-0');
  await page.fill('#password', PASSWORD);
  await page.fill('#password2', PASSWORD);
  await page.click('#submit');
  assert.match(
    await page.textContent('#error'),
    lang === 'ja' ? /仮暗証番号が正しくありません/ : /corporation ID, user ID or PIN is wrong/,
  );
  assert.equal(await page.inputValue('#corp_id'), corp);
  assert.equal(await page.inputValue('#pin'), '');
  await shoot(page, `enroll-refused`);
  await page.fill('#pin', pin);
  await page.fill('#password', PASSWORD);
  await page.fill('#password2', PASSWORD);
  await page.click('#submit');
  await page.waitForSelector('#download');
  const cn = (await page.textContent('#cn')).trim();
  assert.equal(cn, user ? `${corp} ${user}` : corp);
  const serial = (await page.textContent('#serial')).trim();
  await shoot(page, `enrolled-${who}`);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  assert.equal(download.suggestedFilename(), 'certificate.p12');
  const file = path.join(SHOTS, `${who}.p12`);
  await download.saveAs(file);
  await ctx.close();
  return { file, serial, cn };
}

/// Opens the application through certgate with the certificate in `pfx`: what the echo saw. A
/// certificate inside its renewal window meets the renewal notice first: Next (remind me at the
/// next login) goes on to the page, and the next visit passes straight through.
async function application(pfx) {
  const ctx = await context(pfx);
  const page = await ctx.newPage();
  let response = await page.goto(`${BASE}/top`);
  let noticed = false;
  if (await page.$('#next')) {
    noticed = true;
    assert.match(await page.textContent('h1'), /電子証明書更新のお知らせ/);
    await bothLanguages(page, 'notice');
    assert.ok(await page.isChecked('#remind'));
    await page.click('#next');
    assert.equal(new URL(page.url()).pathname, '/top');
    response = await page.goto(`${BASE}/top`);
  }
  const status = response.status();
  const text = await page.textContent('body');
  await ctx.close();
  return { status, noticed, echo: status === 200 ? JSON.parse(text) : text };
}

try {
  // The administrator first.
  const admin = await enroll('admin', CORP, '', env('ADMIN_PIN'));
  const adminApp = await application(admin.file);
  assert.equal(adminApp.status, 200);
  assert.equal(adminApp.echo.headers['x-client-corp-id'], CORP);
  seen.admin = { serial: admin.serial, corp: adminApp.echo.headers['x-client-corp-id'] };

  // The administrator adds the user on the admin page and re-issues: the temporary PIN is shown
  // once.
  const adminCtx = await context(admin.file);
  const adminPage = await adminCtx.newPage();
  await adminPage.goto(`${BASE}/certgate/admin`);
  assert.match(await adminPage.textContent('h1'), /利用者管理/);
  await bothLanguages(adminPage, 'admin');
  await adminPage.fill('#new-user-id', USER);
  await adminPage.fill('#new-name', '佐藤 花子');
  await adminPage.selectOption('#new-role', 'general');
  await adminPage.click('#add');
  await adminPage.waitForSelector(`#user-${USER}`);
  // The user's details page, in both languages (changing nothing).
  await adminPage.click(`#edit-${USER}`);
  assert.equal(await adminPage.inputValue('#name'), '佐藤 花子');
  await bothLanguages(adminPage, 'edit-user');
  await adminPage.click('#cancel');
  await adminPage.click(`#reissue-${USER}`);
  await shoot(adminPage, 'reissued');
  // Once more from the English page: the newest PIN is the one that counts.
  await adminPage.goto(`${BASE}/certgate/admin?lang=en`);
  await adminPage.click(`#reissue-${USER}`);
  const userPin = (await adminPage.textContent('#pin')).trim();
  await shoot(adminPage, 'reissued');
  // A second user, revoked at the end from the English page.
  await adminPage.goto(`${BASE}/certgate/admin?lang=en`);
  await adminPage.fill('#new-user-id', 'jiro');
  await adminPage.click('#add');
  await adminPage.waitForSelector('#user-jiro');
  await adminPage.click('#reissue-jiro');
  const jiroPin = (await adminPage.textContent('#pin')).trim();
  await adminCtx.close();
  const jiro = await enroll('jiro', CORP, 'jiro', jiroPin);

  // Then the user.
  // The user reads English.
  const user = await enroll('user', CORP, USER, userPin, 'en');
  const userApp = await application(user.file);
  assert.equal(userApp.status, 200);
  assert.equal(userApp.echo.headers['x-client-user-id'], USER);
  seen.user = {
    serial: user.serial,
    user: userApp.echo.headers['x-client-user-id'],
    noticed: userApp.noticed,
    daysLeft: userApp.echo.headers['x-client-cert-days-left'],
  };

  // The user's own page, then renewal: Cancel, then Execute.
  const ctx = await context(user.file);
  const page = await ctx.newPage();
  await page.goto(`${BASE}/certgate/me`);
  assert.equal((await page.textContent('#serial')).trim(), user.serial);
  await bothLanguages(page, 'me');
  await page.click('#renew');
  await page.waitForSelector('#execute');
  await bothLanguages(page, 'renew');
  await page.click('#cancel');
  assert.match(await page.textContent('h1'), /電子証明書更新中断/);
  await shoot(page, 'renew-cancelled');
  // Cancel again and Execute in English (the result pages in the other language).
  await page.goto(`${BASE}/certgate/renew?lang=en`);
  await page.click('#cancel');
  assert.match(await page.textContent('h1'), /Renewal interrupted/);
  await shoot(page, 'renew-cancelled');
  await page.click('#back');
  await page.fill('#password', PASSWORD);
  await page.fill('#password2', PASSWORD);
  await page.click('#execute');
  await page.waitForSelector('#download');
  const renewedSerial = (await page.textContent('#serial')).trim();
  assert.notEqual(renewedSerial, user.serial);
  assert.ok(await page.$('#old-certificate'));
  await shoot(page, 'renewed');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  const renewedFile = path.join(SHOTS, 'user-renewed.p12');
  await download.saveAs(renewedFile);
  await ctx.close();
  // The old certificate is logged off: the application's pages send it to reconnect.
  const oldApp = await application(user.file);
  assert.equal(oldApp.status, 403);
  assert.match(oldApp.echo, /close every browser window/);
  const renewedApp = await application(renewedFile);
  assert.equal(renewedApp.status, 200);
  assert.equal(renewedApp.echo.headers['x-client-user-id'], USER);
  seen.renewed = { serial: renewedSerial, servedSerial: renewedApp.echo.headers['x-client-cert-serial'] };

  // Renewed once more, in Japanese this time (the result page in the other language); the
  // certificate it replaced is logged off in turn.
  const againCtx = await context(renewedFile);
  const againPage = await againCtx.newPage();
  await againPage.goto(`${BASE}/certgate/renew`);
  await againPage.fill('#password', PASSWORD);
  await againPage.fill('#password2', PASSWORD);
  await againPage.click('#execute');
  await againPage.waitForSelector('#download');
  assert.match(await againPage.textContent('h1'), /更新しました/);
  await shoot(againPage, 'renewed');
  const [second] = await Promise.all([againPage.waitForEvent('download'), againPage.click('#download')]);
  const latestFile = path.join(SHOTS, 'user-renewed-again.p12');
  await second.saveAs(latestFile);
  await againCtx.close();
  assert.equal((await application(renewedFile)).status, 403);
  assert.equal((await application(latestFile)).status, 200);

  // The administrator revokes the user on the admin page, confirming with their confirmation
  // password (set on first use); the user's next page load is refused.
  const revokeCtx = await context(admin.file);
  const revokePage = await revokeCtx.newPage();
  await revokePage.goto(`${BASE}/certgate/admin`);
  await revokePage.click(`#revoke-${USER}`);
  await revokePage.waitForSelector('#set-confirmation');
  await bothLanguages(revokePage, 'confirmation-set');
  await revokePage.fill('#password', 'confirmation-pass-1');
  await revokePage.fill('#password2', 'confirmation-pass-1');
  await revokePage.click('#set-confirmation');
  await revokePage.waitForSelector('#revoke');
  await shoot(revokePage, 'confirmation-done');
  await revokePage.goto(`${BASE}/certgate/admin/revoke?user=${USER}`);
  await bothLanguages(revokePage, 'revoke');
  await revokePage.selectOption('#reason', 'keyCompromise');
  await revokePage.fill('#confirmation', 'confirmation-pass-1');
  await shoot(revokePage, 'revoke');
  await revokePage.click('#revoke');
  assert.equal((await revokePage.textContent('#status')).trim(), '失効');
  await shoot(revokePage, 'revoked');
  await revokePage.goto(`${BASE}/certgate/admin/revoke?lang=en&user=jiro`);
  await revokePage.fill('#confirmation', 'confirmation-pass-1');
  await revokePage.click('#revoke');
  assert.equal((await revokePage.textContent('#status')).trim(), 'revoked');
  await shoot(revokePage, 'revoked');
  await revokeCtx.close();
  assert.equal((await application(jiro.file)).status, 403);
  const afterRevocation = await application(latestFile);
  seen.revoked = { status: afterRevocation.status };
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
