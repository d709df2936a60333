//! Keeps `docs/cli.md` true to the binary: every subcommand `bilevel --help` lists has a
//! `## bilevel <subcommand>` section, every long flag its `--help` defines appears in that
//! section, and every `--flag` the section mentions exists in that `--help` (so the reference
//! can neither miss a flag nor keep one that was removed).

use std::collections::BTreeSet;
use std::process::Command;

/// Flags clap adds to every command; the reference does not list them.
const BUILTIN: [&str; 2] = ["help", "version"];

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_bilevel"))
        .args(args)
        .arg("--help")
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("run bilevel");
    assert!(out.status.success(), "bilevel {args:?} --help failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// The subcommands in the `Commands:` block of `bilevel --help` (without clap's `help`).
fn subcommands(top: &str) -> Vec<String> {
    top.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(String::from)
        .collect()
}

/// Every `--name` in `text` (name: letters, digits, `_` and `-`, starting with a letter, digit
/// or `_`).
fn long_flags(text: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("--") {
        let after = &rest[at + 2..];
        let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect();
        let starts_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let preceded_by_word = rest[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '-');
        if starts_ok && !preceded_by_word {
            flags.insert(name.trim_end_matches('-').to_string());
        }
        rest = &after[name.len()..];
    }
    flags
}

/// The flags a subcommand's `--help` defines: the option lines (`--name …` or `-o, --name …`).
fn defined_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = if l.len() > 4 && l.starts_with('-') && &l[2..4] == ", " { &l[4..] } else { l };
            l.starts_with("--").then(|| long_flags(l.split_whitespace().next().unwrap_or("")))
        })
        .flatten()
        .filter(|f| !BUILTIN.contains(&f.as_str()))
        .collect()
}

/// The body of the section titled exactly `## bilevel <sub>`, up to the next `#` or `##` heading.
fn section(doc: &str, sub: &str) -> Option<String> {
    let title = format!("## bilevel {sub}");
    let mut lines = doc.lines().skip_while(|l| l.trim_end() != title);
    lines.next()?;
    Some(lines.take_while(|l| !l.starts_with("# ") && !l.starts_with("## ")).collect::<Vec<_>>().join("\n"))
}

#[test]
fn docs_cli_md_lists_every_subcommand_and_flag_and_no_other() {
    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cli.md");
    let doc = std::fs::read_to_string(doc_path).expect("read docs/cli.md");
    let subs = subcommands(&help(&[]));
    assert!(subs.len() >= 10, "too few subcommands found in `bilevel --help`: {subs:?}");
    let mut problems = Vec::new();
    for sub in &subs {
        let text = help(&[sub]);
        let Some(body) = section(&doc, sub) else {
            problems.push(format!("bilevel {sub}: docs/cli.md has no section titled `## bilevel {sub}`"));
            continue;
        };
        let documented = long_flags(&body);
        for flag in defined_flags(&text) {
            if !documented.contains(&flag) {
                problems.push(format!("bilevel {sub}: --{flag} (in `bilevel {sub} --help`) is missing from its section of docs/cli.md"));
            }
        }
        // A flag the doc names must exist: as an option, or as an alias the help itself names.
        let known = long_flags(&text);
        for flag in documented {
            if !known.contains(&flag) {
                problems.push(format!("bilevel {sub}: docs/cli.md names --{flag}, which `bilevel {sub} --help` does not have"));
            }
        }
    }
    for line in doc.lines() {
        if let Some(sub) = line.trim_end().strip_prefix("## bilevel ") {
            if !subs.iter().any(|s| s == sub) {
                problems.push(format!("bilevel {sub}: docs/cli.md has a section for it, but `bilevel --help` lists no such subcommand"));
            }
        }
    }
    assert!(problems.is_empty(), "docs/cli.md is out of date with the CLI:\n{}", problems.join("\n"));
}

#[test]
fn flag_scanner_finds_flags_and_skips_dashes() {
    let found = long_flags("use `--hessian_q` and --T, -o, --out FILE; not a--b, not -- alone, `--cpu32-1t`.");
    let want: BTreeSet<String> = ["hessian_q", "T", "out", "cpu32-1t"].into_iter().map(String::from).collect();
    assert_eq!(found, want);
    let help = "Options:\n  -o, --out <OUT>  The figure\n      --reference  Overlay; see --smooth\n  -h, --help  Print help\n";
    let want: BTreeSet<String> = ["out", "reference"].into_iter().map(String::from).collect();
    assert_eq!(defined_flags(help), want);
    let doc = "# t\n## bilevel a\nx --one\n### sub\n--two\n## bilevel b\n--three\n";
    assert_eq!(long_flags(&section(doc, "a").unwrap()), ["one", "two"].into_iter().map(String::from).collect());
    assert_eq!(long_flags(&section(doc, "b").unwrap()), ["three"].into_iter().map(String::from).collect());
    assert!(section(doc, "c").is_none());
}
