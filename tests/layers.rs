//! The crate's layout holds: every `crate::` path in a module points to a module listed before it
//! in the map of `src/lib.rs` (so the stages import only earlier stages and the vocabulary), and
//! therefore there is no import cycle. The order is read from the map itself, so the map cannot
//! drift from the code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The modules in the order of the table in lib.rs's documentation.
fn map_order() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| l.strip_prefix("//! | [`"))
        .filter_map(|l| l.split_once("`]").map(|(name, _)| name.to_owned()))
        .collect()
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

/// The top-level modules a file's non-test code names through `crate::`.
fn references(text: &str, known: &[String]) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut found = BTreeSet::new();
    let mut push = |name: &str| {
        if known.iter().any(|k| k == name) {
            found.insert(name.to_owned());
        }
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or_default();
            for item in inner.split(',') {
                push(item.trim().split("::").next().unwrap_or_default().trim());
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            push(&name);
        }
    }
    found
}

#[test]
fn every_module_imports_only_modules_before_it_in_the_map() {
    let order = map_order();
    assert!(order.len() >= 20, "the map in lib.rs lists the modules: {order:?}");
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut upward = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src()).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let at = order.iter().position(|m| *m == module).unwrap_or_else(|| panic!("{module} is not in lib.rs's map"));
        for target in references(&std::fs::read_to_string(&file).unwrap(), &order) {
            let to = order.iter().position(|m| *m == target).unwrap();
            if to > at {
                upward.push(format!("{} names crate::{target}, listed after {module}", rel.display()));
            }
        }
    }
    assert!(upward.is_empty(), "imports that point down the map:\n{}", upward.join("\n"));
}
