//! The crate's layers, enforced: every `crate::<module>` path in `src/` must name a
//! module on the same layer or below its own (STYLE.md, "Dependencies flow one
//! way"). A test over the source text rather than separate crates: the layers are
//! one table here, the check costs no build time, and moving a module is a one-line
//! change, where crates for the bottom layers would split the build and the
//! `pub(crate)` surface for a rule a table states as well.
//!
//! When this fails, move the thing the lower module needs down (or pass it in); do
//! not add a row to `KNOWN`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top-level modules by layer, top first. A module may use its own layer and every
/// layer below it, never one above.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "the command line, the protocol client, test drivers",
        &["cli", "client", "fuzzing", "proto_vectors", "testkit"],
    ),
    (
        "wiring: opens backends, starts roles, binds; nothing below imports it",
        &["app", "http", "backends", "demo", "serve"],
    ),
    ("the two edges: server API and sockets", &["api", "gateway"]),
    (
        "roles behind the sockets, and replay",
        &["pipeline", "recovery"],
    ),
    (
        "local state the edges and roles share",
        &["connections", "presence"],
    ),
    (
        "backends, each a trait with two implementations",
        &["msglog", "store"],
    ),
    (
        "types and rules that stand alone",
        &["domain", "proto", "access"],
    ),
    (
        "the floor: configuration, defaults and what is derived from them, utilities",
        &[
            "config",
            "budget",
            "telemetry",
            "secrets",
            "redact",
            "backoff",
            "faults",
            "outbound",
            "shutdown",
            "heap_profile",
        ],
    ),
];

/// Imports against the layers that are known and not yet fixed: (from, to, why).
/// Only ever shrinks.
const KNOWN: &[(&str, &str, &str)] = &[(
    "recovery",
    "backends",
    "replay opens its backends from the configuration instead of receiving them",
)];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a text names through `crate::`, each with the line it is
/// named on: `crate::a::…`, and each item of `crate::{a, b::{c, d}}` even
/// when the group spans lines. Comments are not code.
fn named_modules(text: &str) -> Vec<(usize, String)> {
    let code: String = text
        .lines()
        .map(|l| format!("{}\n", l.split("//").next().unwrap_or("")))
        .collect();
    let line = |at: usize| code[..at].matches('\n').count() + 1;
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::") {
        let start = from + at + "crate::".len();
        from = start;
        let rest = &code[start..];
        if rest.starts_with('{') {
            // The group's top-level items: split at commas outside nested braces.
            let (mut depth, mut item_start) = (0, start + 1);
            for (i, c) in rest.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' | ',' if depth == 1 => {
                        let item = code[item_start..start + i].trim_start();
                        let name: String = item
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if !name.is_empty() {
                            out.push((line(start + i - item.len()), name));
                        }
                        item_start = start + i + 1;
                        if c == '}' {
                            break;
                        }
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push((line(start), name));
            }
        }
    }
    out
}

/// Every import of `src/` that runs upward: (file, line number, from, to).
fn upward_imports(src: &Path) -> Vec<(String, usize, String, String)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let from = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_owned();
        if from == "lib" || from == "main" {
            continue;
        }
        let from_layer = layer_of(&from)
            .unwrap_or_else(|| panic!("src/{rel}: module `{from}` has no layer in LAYERS"));
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, to) in named_modules(&text) {
            let Some(to_layer) = layer_of(&to) else {
                continue;
            };
            if to_layer < from_layer && !KNOWN.iter().any(|(f, t, _)| *f == from && *t == to) {
                found.push((rel.clone(), line, from.clone(), to));
            }
        }
    }
    found
}

#[test]
fn no_import_runs_against_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let upward = upward_imports(&src);
    let report: Vec<String> = upward
        .iter()
        .map(|(file, line, from, to)| format!("src/{file}:{line}: {from} imports {to}"))
        .collect();
    assert!(
        report.is_empty(),
        "imports against the layers (a module may use its layer and those below):\n{}",
        report.join("\n")
    );
}

#[test]
fn every_module_of_the_crate_has_a_layer() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let mut modules = BTreeSet::new();
    for line in lib.lines() {
        let decl = line.trim_start();
        let decl = decl.strip_prefix("pub ").unwrap_or(decl);
        if let Some(name) = decl.strip_prefix("mod ") {
            modules.insert(name.trim_end_matches([';', '{', ' ']).to_owned());
        }
    }
    assert!(modules.contains("gateway"), "no modules read from lib.rs");
    let missing: Vec<_> = modules.iter().filter(|m| layer_of(m).is_none()).collect();
    assert!(missing.is_empty(), "modules with no layer: {missing:?}");
}

/// The check itself: an upward path is found with its line, a downward one is not,
/// and a grouped import (across lines) counts each of its modules.
#[test]
fn the_check_sees_an_upward_import() {
    let names =
        |text: &str| -> Vec<String> { named_modules(text).into_iter().map(|(_, n)| n).collect() };
    assert_eq!(names("use crate::http::socket_config;"), ["http"]);
    assert_eq!(
        names("use crate::{\n    config::{Config, Limits},\n    store::Store,\n};"),
        ["config", "store"]
    );
    assert!(names("// crate::app is wiring").is_empty());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/x.rs"),
        "use crate::redact::url;\nuse crate::pipeline::delay::DEFAULT_TIERS_SECS;\n",
    )
    .unwrap();
    assert_eq!(
        upward_imports(dir.path()),
        [(
            "config/x.rs".to_owned(),
            2,
            "config".to_owned(),
            "pipeline".to_owned()
        )]
    );
}
