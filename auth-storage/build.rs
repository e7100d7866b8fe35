//! Generates the list of conformance behaviours from `src/conformance/*.rs`: every
//! `pub async fn` there is one behaviour, so a new one cannot be forgotten in
//! `conformance_tests!` or `run_all`.

use std::fmt::Write as _;
use std::path::Path;

/// The suite's files, in the order the behaviours run.
const FILES: &[&str] = &["users", "sessions", "concurrency", "logins", "challenges"];

fn main() {
    let dir = Path::new("src/conformance");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names = Vec::new();
    for file in FILES {
        let path = dir.join(format!("{file}.rs"));
        println!("cargo:rerun-if-changed={}", path.display());
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("pub async fn ") {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                names.push(rest[..end].to_owned());
            }
        }
    }
    assert!(
        !names.is_empty(),
        "no behaviours found in {}",
        dir.display()
    );
    let out = std::env::var("OUT_DIR").expect("OUT_DIR is set by cargo");
    let mut mac = String::from(
        "/// Applies `conformance_tests!(@apply ...)` to every behaviour (generated).\n\
         #[doc(hidden)]\n#[macro_export]\nmacro_rules! __conformance_behaviours {\n    \
         ([$($mode:tt)*]) => {\n        $crate::conformance_tests!(@apply [$($mode)*]\n",
    );
    for name in &names {
        let _ = writeln!(mac, "            {name}");
    }
    mac.push_str("        );\n    };\n}\n");
    let list = format!(
        "&[{}]",
        names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    std::fs::write(Path::new(&out).join("conformance_behaviours.rs"), mac)
        .expect("write the behaviour macro");
    std::fs::write(Path::new(&out).join("conformance_behaviour_names.rs"), list)
        .expect("write the behaviour names");
    let mut run_all = String::from(
        "/// Runs every behaviour of the suite, one after another, against one shared\n\
         /// instance.\n///\n\
         /// Meant for backends that are expensive to start (a replicated cluster). It panics\n\
         /// at the first behaviour that fails.\n\
         pub async fn run_all<S: Storage>(s: Arc<S>) {\n",
    );
    for name in &names {
        let _ = writeln!(run_all, "    {name}(&s).await;");
    }
    run_all.push_str("}\n");
    std::fs::write(Path::new(&out).join("conformance_run_all.rs"), run_all).expect("write run_all");
}
