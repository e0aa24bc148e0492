//! Differential test of the canonicalizer against libxml2 (`xmllint --c14n` / `--exc-c14n`,
//! Debian package libxml2-utils): generated documents full of what C14N is about — prefixes,
//! default namespaces set and unset, redeclarations, attributes needing escapes, character
//! references, CDATA, comments and PIs inside and outside the root — must canonicalize to the
//! same bytes. `LIENTHONG_C14N_CASES=N` runs more (scripts/fuzz.sh runs 20,000).

use std::process::Command;

use lienthong::dsig::c14n::{self, C14n, Subset};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const PREFIXES: &[&str] = &["a", "b", "ds", "edXML"];
const URIS: &[&str] = &[
    "urn:one",
    "urn:two",
    "http://www.w3.org/2000/09/xmldsig#",
    "urn:x:y",
];
const TEXTS: &[&str] = &[
    "plain",
    " spaced  out ",
    "amp &amp; lt &lt; gt &gt;",
    "quote \" apos '",
    "tiếng Việt — ký số",
    "cr&#13;lf&#10;tab&#9;",
    "&#x1F600;",
    "\n  \n",
    "]]&gt;",
];
const ATTR_VALUES: &[&str] = &[
    "v",
    " a  b ",
    "&lt;&amp;&quot;",
    "tab&#9;nl&#10;cr&#13;",
    "ắ",
    "'single'",
    "x&gt;y",
];

/// A random element; `depth` bounds the nesting, `decl` says which prefixes are in scope.
fn element(r: &mut Rng, depth: u32, in_scope: &mut Vec<String>, out: &mut String) {
    let mut declared = Vec::new();
    let mut attrs = String::new();
    for _ in 0..r.below(3) {
        let p = r.pick(PREFIXES);
        let uri = r.pick(URIS);
        if !declared.contains(&p.to_string()) {
            attrs.push_str(&format!(" xmlns:{p}=\"{uri}\""));
            declared.push(p.to_string());
        }
    }
    match r.below(5) {
        0 => attrs.push_str(&format!(" xmlns=\"{}\"", r.pick(URIS))),
        1 if !in_scope.is_empty() => attrs.push_str(" xmlns=\"\""),
        _ => {}
    }
    in_scope.extend(declared.iter().cloned());
    let usable: Vec<String> = in_scope.clone();
    let name = |r: &mut Rng, base: &str| {
        if !usable.is_empty() && r.below(2) == 0 {
            format!("{}:{base}", usable[r.below(usable.len() as u64) as usize])
        } else {
            base.to_owned()
        }
    };
    let base = ["e", "f", "Signature", "g"][r.below(4) as usize];
    let tag = name(r, base);
    let mut used = Vec::new();
    for i in 0..r.below(4) {
        let an = if r.below(3) == 0 {
            "xml:lang".to_owned()
        } else {
            name(r, &format!("at{i}"))
        };
        if used.contains(&an) {
            continue;
        }
        attrs.push_str(&format!(" {an}=\"{}\"", r.pick(ATTR_VALUES)));
        used.push(an);
    }
    if depth == 0 || r.below(4) == 0 {
        out.push_str(&format!("<{tag}{attrs}/>"));
    } else {
        out.push_str(&format!("<{tag}{attrs}>"));
        for _ in 0..r.below(4) + 1 {
            match r.below(7) {
                0 | 1 => element(r, depth - 1, in_scope, out),
                2 => out.push_str(r.pick(TEXTS)),
                3 => out.push_str("<!-- a comment -->"),
                4 => out.push_str("<?pi  some data ?>"),
                5 => out.push_str("<![CDATA[<raw> & ]]>"),
                _ => out.push_str(r.pick(TEXTS)),
            }
        }
        out.push_str(&format!("</{tag}>"));
    }
    in_scope.truncate(in_scope.len() - declared.len());
}

fn document(seed: u64) -> String {
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    if r.below(2) == 0 {
        out.push_str("<!-- before -->\n<?pi before?>\n");
    }
    element(&mut r, 4, &mut Vec::new(), &mut out);
    if r.below(2) == 0 {
        out.push_str("\n<!-- after -->");
    }
    out.push('\n');
    out
}

fn ours(doc: &str, uri: &str) -> Vec<u8> {
    let m = C14n::from_uri(uri, None).unwrap();
    let mut v = Vec::new();
    c14n::canonicalize(
        doc.as_bytes(),
        Subset::Document { exclude: None },
        &m,
        &mut |b| v.extend_from_slice(b),
    )
    .unwrap();
    v
}

#[test]
fn canonical_forms_match_libxml2() {
    let cases: u64 = std::env::var("LIENTHONG_C14N_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let dir = tempfile::tempdir().unwrap();
    let mut compared = 0;
    for seed in 1..=cases {
        let doc = document(seed);
        let f = dir.path().join("d.xml");
        std::fs::write(&f, &doc).unwrap();
        for (flag, uri) in [
            ("--c14n", C14n::INCLUSIVE_COMMENTS),
            ("--exc-c14n", C14n::EXCLUSIVE_COMMENTS),
        ] {
            let out = Command::new("xmllint")
                .arg(flag)
                .arg(&f)
                .output()
                .expect("xmllint is installed (libxml2-utils; .ci/run installs it)");
            if !out.status.success() {
                // libxml2 refuses the document (e.g. a namespace it finds invalid): the
                // generator's business, not a disagreement.
                continue;
            }
            let mine = ours(&doc, uri);
            assert_eq!(
                String::from_utf8_lossy(&mine),
                String::from_utf8_lossy(&out.stdout),
                "seed {seed} {flag}, document:\n{doc}"
            );
            compared += 1;
        }
    }
    assert!(compared as u64 >= cases, "only {compared} comparisons ran");
}
