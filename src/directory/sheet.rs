//! The agency directory as a table: the city keeps its ~500 agencies in a spreadsheet, and
//! `lienthong directory import|export` turns its rows into the directory file and back.
//!
//! Import checks every row and reports every problem at once with its spreadsheet row number
//! (the header is row 1), so an operator fixes the sheet in one pass; nothing is written unless
//! the whole sheet is valid. Headers are matched case-insensitively, in English or Vietnamese,
//! and a column the hub does not know is an error rather than silently dropped data.

use std::collections::HashMap;
use std::path::PathBuf;

use super::{Agency, Directory};

/// The most agency rows a sheet may have (a country has tens of thousands of agencies).
pub const MAX_ROWS: usize = 100_000;
/// The longest cell, in bytes.
const MAX_CELL: usize = 4096;

/// A column of the sheet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Column {
    OrganId,
    Name,
    Parent,
    CertSha256,
    SigningCertSha256,
    PdfSignerNames,
    PushUrl,
    PushCa,
}

/// Each column: its header on export, and every header accepted on import (lower case).
const COLUMNS: [(Column, &str, &[&str]); 8] = [
    (
        Column::OrganId,
        "OrganId",
        &["organid", "organ_id", "id", "mã định danh", "ma dinh danh"],
    ),
    (
        Column::Name,
        "name",
        &["name", "tên", "tên cơ quan", "ten co quan", "ten"],
    ),
    (
        Column::Parent,
        "parent",
        &["parent", "cơ quan cấp trên", "co quan cap tren"],
    ),
    (
        Column::CertSha256,
        "cert_sha256",
        &["cert_sha256", "tls_cert_sha256"],
    ),
    (
        Column::SigningCertSha256,
        "signing_cert_sha256",
        &["signing_cert_sha256"],
    ),
    (
        Column::PdfSignerNames,
        "pdf_signer_names",
        &["pdf_signer_names"],
    ),
    (Column::PushUrl, "push_url", &["push_url", "push url"]),
    (Column::PushCa, "push_ca", &["push_ca"]),
];

/// A table read from a file: rows of cells, each with its spreadsheet row number (1-based).
#[derive(Debug, Default)]
pub struct Table {
    pub rows: Vec<(usize, Vec<String>)>,
}

/// Why a sheet was not imported: every problem, with its row.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.0))]
pub struct SheetProblems(pub Vec<String>);

fn render(problems: &[String]) -> String {
    const SHOWN: usize = 100;
    let mut out = format!("{} problem(s):", problems.len());
    for p in problems.iter().take(SHOWN) {
        out.push_str("\n  ");
        out.push_str(p);
    }
    if problems.len() > SHOWN {
        out.push_str(&format!("\n  … and {} more", problems.len() - SHOWN));
    }
    out
}

/// Column letters as a spreadsheet shows them (0 → A, 26 → AA).
fn letter(mut i: usize) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'A' + (i % 26) as u8);
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    s.reverse();
    String::from_utf8(s).expect("ASCII")
}

/// Which column each header cell is, or every header problem.
fn header_columns(row: usize, cells: &[String]) -> Result<Vec<Option<Column>>, Vec<String>> {
    let mut problems = Vec::new();
    let mut seen: HashMap<Column, usize> = HashMap::new();
    let mut out = Vec::with_capacity(cells.len());
    for (i, cell) in cells.iter().enumerate() {
        let h = cell.trim().trim_start_matches('\u{feff}').to_lowercase();
        if h.is_empty() {
            out.push(None);
            continue;
        }
        let Some(&(col, _, _)) = COLUMNS
            .iter()
            .find(|(_, _, names)| names.contains(&h.as_str()))
        else {
            let known: Vec<&str> = COLUMNS.iter().map(|c| c.1).collect();
            problems.push(format!(
                "row {row}, column {} ({cell:?}): unknown column; the columns are {}",
                letter(i),
                known.join(", ")
            ));
            out.push(None);
            continue;
        };
        if let Some(first) = seen.insert(col, i) {
            problems.push(format!(
                "row {row}, column {}: {cell:?} is the same column as {}",
                letter(i),
                letter(first)
            ));
        }
        out.push(Some(col));
    }
    for (col, name) in [(Column::OrganId, "OrganId"), (Column::Name, "name")] {
        if !seen.contains_key(&col) {
            problems.push(format!("row {row}: no {name} column"));
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Splits a list cell: fingerprints on `;`, `,` or white space, names on `;` or new lines
/// (names may hold commas).
fn split(cell: &str, commas: bool) -> Vec<String> {
    cell.split(|c: char| c == ';' || c == '\n' || (commas && (c == ',' || c.is_whitespace())))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// A fingerprint as openssl prints it (`AB:CD:…`) or as hex; stored lower-case without colons.
fn fingerprint(s: &str) -> String {
    s.chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// One data row as an agency; problems found in its cells are pushed with the row number.
fn agency_of(
    row: usize,
    cells: &[String],
    columns: &[Option<Column>],
    problems: &mut Vec<String>,
) -> Agency {
    let mut a = Agency::default();
    for (i, cell) in cells.iter().enumerate() {
        let value = cell.trim();
        if value.is_empty() {
            continue;
        }
        if value.len() > MAX_CELL {
            problems.push(format!(
                "row {row}, column {}: longer than {MAX_CELL} bytes",
                letter(i)
            ));
            continue;
        }
        let Some(Some(col)) = columns.get(i) else {
            problems.push(format!(
                "row {row}, column {}: a value under no header",
                letter(i)
            ));
            continue;
        };
        match col {
            Column::OrganId => a.id = value.to_owned(),
            Column::Name => a.name = value.to_owned(),
            Column::Parent => a.parent = Some(value.to_owned()),
            Column::CertSha256 => a.cert_sha256 = Some(fingerprint(value)),
            Column::SigningCertSha256 => {
                a.signing_cert_sha256 = split(value, true).iter().map(|f| fingerprint(f)).collect()
            }
            Column::PdfSignerNames => a.pdf_signer_names = split(value, false),
            Column::PushUrl => a.push_url = Some(value.to_owned()),
            Column::PushCa => a.push_ca = Some(PathBuf::from(value)),
        }
    }
    a
}

/// Whether the table's first non-blank row has an OrganId header (a workbook's other sheets —
/// notes, a title page — do not).
pub fn has_organ_id_header(table: &Table) -> bool {
    let header = table
        .rows
        .iter()
        .find(|(_, cells)| cells.iter().any(|c| !c.trim().is_empty()));
    let aliases = COLUMNS[0].2;
    header.is_some_and(|(_, cells)| {
        cells.iter().any(|c| {
            aliases.contains(
                &c.trim()
                    .trim_start_matches('\u{feff}')
                    .to_lowercase()
                    .as_str(),
            )
        })
    })
}

/// The agencies of a table, or every problem with its row number.
pub fn agencies_from(table: &Table) -> Result<Vec<Agency>, SheetProblems> {
    let blank = |cells: &[String]| cells.iter().all(|c| c.trim().is_empty());
    let mut rows = table.rows.iter().filter(|(_, cells)| !blank(cells));
    let Some((header_row, header)) = rows.next() else {
        return Err(SheetProblems(vec!["the sheet is empty".into()]));
    };
    let columns = header_columns(*header_row, header).map_err(SheetProblems)?;
    let mut problems = Vec::new();
    let mut agencies = Vec::new();
    let mut row_of: HashMap<String, usize> = HashMap::new();
    for (row, cells) in rows {
        if agencies.len() == MAX_ROWS {
            problems.push(format!("row {row}: more than {MAX_ROWS} agencies"));
            break;
        }
        let a = agency_of(*row, cells, &columns, &mut problems);
        for p in a.problems() {
            problems.push(format!("row {row} ({}): {p}", a.id));
        }
        if let Some(first) = row_of.insert(a.id.clone(), *row) {
            problems.push(format!(
                "row {row}: OrganId {} is already on row {first}",
                a.id
            ));
        }
        agencies.push((*row, a));
    }
    for (row, a) in &agencies {
        if let Some(p) = &a.parent
            && !row_of.contains_key(p)
        {
            problems.push(format!(
                "row {row} ({}): parent {p} is not in the sheet",
                a.id
            ));
        }
    }
    if !problems.is_empty() {
        return Err(SheetProblems(problems));
    }
    Ok(agencies.into_iter().map(|(_, a)| a).collect())
}

/// The directory as rows, header first, in the order of the file.
pub fn rows_of(dir: &Directory) -> Vec<Vec<String>> {
    let mut rows = vec![COLUMNS.iter().map(|c| c.1.to_owned()).collect()];
    for a in dir.agencies() {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        rows.push(vec![
            a.id.clone(),
            a.name.clone(),
            opt(&a.parent),
            opt(&a.cert_sha256),
            a.signing_cert_sha256.join("; "),
            a.pdf_signer_names.join("; "),
            opt(&a.push_url),
            a.push_ca
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ]);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[&[&str]]) -> Table {
        Table {
            rows: rows
                .iter()
                .enumerate()
                .map(|(i, r)| (i + 1, r.iter().map(|c| c.to_string()).collect()))
                .collect(),
        }
    }

    #[test]
    fn letters_are_spreadsheet_columns() {
        assert_eq!(letter(0), "A");
        assert_eq!(letter(25), "Z");
        assert_eq!(letter(26), "AA");
        assert_eq!(letter(27 * 26), "AAA");
    }

    #[test]
    fn vietnamese_headers_and_openssl_fingerprints() {
        let fp = "AB:".repeat(31) + "AB";
        let t = table(&[
            &["Mã định danh", "Tên cơ quan", "cert_sha256"],
            &["000.00.01.H13", "Sở A", &fp],
            &["", "", ""],
        ]);
        let a = agencies_from(&t).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].cert_sha256.as_deref(), Some("ab".repeat(32).as_str()));
    }

    #[test]
    fn every_problem_has_its_row() {
        let t = table(&[
            &["OrganId", "name", "parent", "push_url"],
            &["000.00.01.H13", "Sở A", "", ""],
            &["bad id", "Sở B", "", ""],
            &["000.00.01.H13", "=HYPERLINK(\"x\")", "", ""],
            &["000.00.04.H13", "Sở D", "000.00.99.H13", "http://x"],
        ]);
        let p = agencies_from(&t).unwrap_err().0;
        let text = p.join("\n");
        assert!(
            text.contains("row 3 (bad id): \"bad id\" is not an OrganId"),
            "{text}"
        );
        assert!(
            text.contains("row 4: OrganId 000.00.01.H13 is already on row 2"),
            "{text}"
        );
        assert!(text.contains("row 4 (000.00.01.H13): the name"), "{text}");
        assert!(text.contains("row 5 (000.00.04.H13): push URL"), "{text}");
        assert!(
            text.contains("row 5 (000.00.04.H13): parent 000.00.99.H13"),
            "{text}"
        );
        assert_eq!(p.len(), 5, "{text}");
    }

    #[test]
    fn unknown_and_repeated_columns_are_refused() {
        let t = table(&[
            &["OrganId", "name", "email", "ID"],
            &["000.00.01.H13", "A", "x", ""],
        ]);
        let text = agencies_from(&t).unwrap_err().to_string();
        assert!(
            text.contains("column C (\"email\"): unknown column"),
            "{text}"
        );
        assert!(
            text.contains("column D: \"ID\" is the same column as A"),
            "{text}"
        );
    }
}
