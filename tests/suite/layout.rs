//! The rooms of `../shared/DESIGN.md` and the arrows between them: no module reaches up. Each
//! room's code (comments aside) may name only the rooms listed for it here, plus the leaves
//! every room may use. A new arrow is a design decision: change DESIGN.md and this table
//! together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Rooms every room may use.
const LEAVES: &[&str] = &["model", "config", "http", "ops"];

/// Each room and the rooms (besides the leaves) it may use.
const ALLOWED: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("http", &[]),
    ("config", &[]),
    ("ops", &[]),
    ("store", &[]),
    ("pki", &[]),
    ("tls", &[]),
    ("identity", &[]),
    ("revocation", &["store"]),
    ("lifecycle", &["pki", "store"]),
    ("notify", &["store"]),
    ("proxy", &["identity", "revocation", "tls"]),
    // The CA certificates and CRLs it serves come from pki.
    ("api", &["lifecycle", "identity", "pki"]),
    // The top: the command line and the wiring of a running server.
    ("cli", &["*"]),
    ("serve", &["*"]),
];

/// The rooms a file's code names as `crate::<room>`.
fn named_rooms(text: &str) -> BTreeSet<String> {
    let mut rooms = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let name: String = rest[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rooms.insert(name);
            rest = &rest[at + 7..];
        }
    }
    rooms
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("src is readable").path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_room_reaches_up() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut found = Vec::new();
    let mut all = Vec::new();
    files(&src, &mut all);
    for path in all {
        let relative = path.strip_prefix(&src).unwrap();
        let room = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if ["lib", "main", "bin"].contains(&room.as_str()) {
            continue;
        }
        let Some(may) = allowed.get(room.as_str()) else {
            found.push(format!(
                "{}: room {room:?} is not in the table of tests/layout.rs",
                relative.display()
            ));
            continue;
        };
        if may.contains(&"*") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for named in named_rooms(&text) {
            if named != room && !LEAVES.contains(&named.as_str()) && !may.contains(&named.as_str())
            {
                found.push(format!(
                    "{}: {room} names crate::{named}, which it may not use",
                    relative.display()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "arrows against DESIGN.md:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_an_arrow_up() {
    let rooms = named_rooms(
        "use crate::api::Api;\n// crate::cli in a comment\nlet x = crate::store::open();",
    );
    assert!(rooms.contains("api") && rooms.contains("store"));
    assert!(!rooms.contains("cli"));
}
