//! Reading and writing the directory's table as CSV or as a workbook (XLSX; XLS and ODS are
//! read too), chosen by the file's extension.
//!
//! CSV as spreadsheets save it: UTF-8 with or without a byte-order mark, separated by commas,
//! semicolons (the list separator of Vietnamese-locale Excel) or tabs, whichever the header
//! line uses. Export writes the BOM so that Excel shows Vietnamese names correctly.

use std::path::Path;

use super::sheet::Table;

/// The largest file read (a sheet of 100,000 agencies is a few MiB).
pub const MAX_FILE_BYTES: u64 = 64 << 20;

const BOM: &str = "\u{feff}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Workbook,
}

fn format_of(path: &Path) -> Result<Format, String> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "csv" | "tsv" | "txt" => Ok(Format::Csv),
        "xlsx" | "xlsm" | "xls" | "ods" => Ok(Format::Workbook),
        _ => Err(format!(
            "{}: give a .csv or .xlsx file (the extension says which)",
            path.display()
        )),
    }
}

/// Reads the table of a CSV file or of a workbook's sheet (`sheet`; default: the first sheet
/// whose header row has an OrganId column).
pub fn read(path: &Path, sheet: Option<&str>) -> Result<Table, String> {
    let format = format_of(path)?;
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if len > MAX_FILE_BYTES {
        return Err(format!(
            "{}: {len} bytes, more than the {MAX_FILE_BYTES} a directory sheet may have",
            path.display()
        ));
    }
    match format {
        Format::Csv => {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            read_csv(&bytes).map_err(|e| format!("{}: {e}", path.display()))
        }
        Format::Workbook => {
            read_workbook(path, sheet).map_err(|e| format!("{}: {e}", path.display()))
        }
    }
}

fn read_csv(bytes: &[u8]) -> Result<Table, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!("not UTF-8 text ({e}): save it as \"CSV UTF-8\" from the spreadsheet")
    })?;
    let text = text.strip_prefix(BOM).unwrap_or(text);
    let first = text.lines().next().unwrap_or("");
    let delimiter = [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|d| first.bytes().filter(|b| b == d).count())
        .expect("three candidates");
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let mut table = Table::default();
    for record in reader.records() {
        let record = record.map_err(|e| e.to_string())?;
        let row = record.position().map_or(0, |p| p.line() as usize);
        table
            .rows
            .push((row, record.iter().map(String::from).collect()));
        if table.rows.len() > super::sheet::MAX_ROWS + 1 {
            break; // agencies_from reports the excess
        }
    }
    Ok(table)
}

fn read_workbook(path: &Path, sheet: Option<&str>) -> Result<Table, String> {
    use calamine::Reader;
    let mut book = calamine::open_workbook_auto(path).map_err(|e| e.to_string())?;
    let names = book.sheet_names();
    let mut table_of = |name: &str| {
        let range = book
            .worksheet_range(name)
            .map_err(|e| format!("sheet {name:?}: {e} (the sheets are {names:?})"))?;
        table_of_range(&range)
    };
    if let Some(name) = sheet {
        return table_of(name);
    }
    // The workbook is opened once; its sheets are read in order until one is the list.
    for name in &names {
        let table = table_of(name)?;
        if super::sheet::has_organ_id_header(&table) {
            return Ok(table);
        }
    }
    Err(format!(
        "no sheet has an OrganId column in its first row (the sheets are {names:?}; --sheet picks one)"
    ))
}

/// A sheet's cells as text, with spreadsheet row numbers; a cell holding an error is refused.
fn table_of_range(range: &calamine::Range<calamine::Data>) -> Result<Table, String> {
    let (first_row, first_col) = range.start().unwrap_or((0, 0));
    let mut table = Table::default();
    for (i, cells) in range.rows().enumerate() {
        let row = first_row as usize + i + 1;
        let mut out = vec![String::new(); first_col as usize];
        for (j, cell) in cells.iter().enumerate() {
            if let calamine::Data::Error(e) = cell {
                return Err(format!(
                    "row {row}, column {}: the cell holds the error {e}",
                    first_col as usize + j + 1
                ));
            }
            out.push(cell.to_string());
        }
        table.rows.push((row, out));
        if table.rows.len() > super::sheet::MAX_ROWS + 1 {
            break;
        }
    }
    Ok(table)
}

/// Writes `rows` (header first) as CSV or XLSX, atomically.
pub fn write(path: &Path, rows: &[Vec<String>]) -> Result<(), String> {
    let bytes = match format_of(path)? {
        Format::Csv => csv_bytes(rows)?,
        Format::Workbook => xlsx_bytes(rows)?,
    };
    crate::files::write_atomic(path, &bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn csv_bytes(rows: &[Vec<String>]) -> Result<Vec<u8>, String> {
    let mut out = BOM.as_bytes().to_vec();
    {
        let mut w = csv::Writer::from_writer(&mut out);
        for r in rows {
            w.write_record(r).map_err(|e| e.to_string())?;
        }
        w.flush().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn xlsx_bytes(rows: &[Vec<String>]) -> Result<Vec<u8>, String> {
    use rust_xlsxwriter::{Format as CellFormat, Workbook};
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    let err = |e: rust_xlsxwriter::XlsxError| e.to_string();
    sheet.set_name("agencies").map_err(err)?;
    let bold = CellFormat::new().set_bold();
    for (r, cells) in rows.iter().enumerate() {
        for (c, cell) in cells.iter().enumerate() {
            // Always a string cell: a name is never evaluated as a formula.
            if r == 0 {
                sheet
                    .write_string_with_format(r as u32, c as u16, cell, &bold)
                    .map_err(err)?;
            } else {
                sheet.write_string(r as u32, c as u16, cell).map_err(err)?;
            }
        }
    }
    sheet.set_freeze_panes(1, 0).map_err(err)?;
    sheet.autofit();
    book.save_to_buffer().map_err(err)
}
