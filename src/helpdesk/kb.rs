//! Knowledge-base articles from Markdown files: one article per `*.md` file, titled by its
//! first heading (else the file name). `helpdesk.kb_dir` names the folder; without it Koji
//! loads the example knowledge base built into the binary (`examples/kb/`).

use crate::store::helpdesk::KbDoc;
use std::path::Path;

/// The example knowledge base, compiled in so the embedded defaults answer out of the box.
const EXAMPLES: &[(&str, &str)] = &[
    ("mfa", include_str!("../../examples/kb/mfa.md")),
    (
        "new-laptop",
        include_str!("../../examples/kb/new-laptop.md"),
    ),
    ("outlook", include_str!("../../examples/kb/outlook.md")),
    (
        "reset-password",
        include_str!("../../examples/kb/reset-password.md"),
    ),
    ("vpn", include_str!("../../examples/kb/vpn.md")),
    ("wifi", include_str!("../../examples/kb/wifi.md")),
];

#[derive(Debug, thiserror::Error)]
#[error("helpdesk.kb_dir: cannot read {path}: {reason}")]
pub struct KbError {
    pub path: String,
    pub reason: String,
}

/// The articles to load: from `kb_dir`, or the built-in examples.
pub fn load(kb_dir: Option<&str>) -> Result<Vec<KbDoc>, KbError> {
    match kb_dir.map(str::trim).filter(|d| !d.is_empty()) {
        None => Ok(EXAMPLES
            .iter()
            .map(|(slug, text)| parse(slug, text))
            .collect()),
        Some(dir) => load_dir(Path::new(dir)),
    }
}

fn load_dir(dir: &Path) -> Result<Vec<KbDoc>, KbError> {
    let err = |p: &Path, e: std::io::Error| KbError {
        path: p.display().to_string(),
        reason: e.to_string(),
    };
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| err(dir, e))? {
        let path = entry.map_err(|e| err(dir, e))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("md") {
            continue;
        }
        let Some(slug) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).map_err(|e| err(&path, e))?;
        docs.push(parse(slug, &text));
    }
    docs.sort_by(|a, b| a.slug.cmp(&b.slug));
    Ok(docs)
}

/// Splits a Markdown file into title (first heading) and body (the rest).
pub fn parse(slug: &str, text: &str) -> KbDoc {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut title = None;
    let mut body = Vec::new();
    for line in text.lines() {
        if title.is_none() && line.trim_start().starts_with('#') {
            title = Some(line.trim_start().trim_start_matches('#').trim().to_string());
            continue;
        }
        body.push(line);
    }
    let title = title
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| slug.replace(['-', '_'], " "));
    KbDoc {
        slug: slug.to_string(),
        title,
        body: body.join("\n").trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_is_the_first_heading_else_the_file_name() {
        let d = parse(
            "vpn",
            "\u{feff}# Connect to the VPN\n\nUse it.\n## Errors\nMore.",
        );
        assert_eq!(d.title, "Connect to the VPN");
        assert_eq!(d.body, "Use it.\n## Errors\nMore.");
        let d = parse("printer-setup", "No heading here.");
        assert_eq!(d.title, "printer setup");
        assert_eq!(d.body, "No heading here.");
    }

    #[test]
    fn the_examples_load_and_a_folder_loads_only_markdown() {
        let docs = load(None).unwrap();
        assert!(docs.iter().any(|d| d.title == "Reset your password"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.md"), "# A\nalpha").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "# ignored").unwrap();
        let docs = load(Some(dir.path().to_str().unwrap())).unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].slug, "a");
        let e = load(Some("/nonexistent/kb")).unwrap_err();
        assert!(e.to_string().contains("helpdesk.kb_dir"), "{e}");
    }
}
