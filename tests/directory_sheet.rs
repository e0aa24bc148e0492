//! The agency directory from a spreadsheet: `lienthong directory import` of a workbook made by
//! openpyxl (tests/data/agencies.xlsx, scripts/make_directory_xlsx.py) into a running hub's
//! directory, picked up on SIGHUP; a sheet with mistakes is refused with every row named and
//! nothing written; export → import gives the same directory back, as CSV and as XLSX.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use lienthong::directory::Directory;

const D: &str = "000.00.04.H13";

/// The HTTP status curl gets for GET /v1/inbox with `agency`'s certificate.
fn inbox_status(hub: &TestHub, agency: &str) -> String {
    let (cert, key) = hub.cert(agency);
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(hub.path("certs/ca.pem"))
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .arg(format!("{}/v1/inbox", hub.url()))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lienthong(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_workbook_import_reaches_the_running_hub_on_sighup() {
    let hub = TestHub::start(SMALL_DIRECTORY, "");
    let xlsx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/agencies.xlsx");
    let agencies = hub.agencies.display().to_string();
    let out = lienthong(
        &[
            "directory",
            "import",
            &xlsx.display().to_string(),
            "--agencies",
            &agencies,
        ],
        hub.dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("4 agencies: 1 added (000.00.04.H13), 0 removed, 2 changed (000.00.02.H13, 000.00.03.H13)"), "{stdout}");
    let dir = Directory::load(&hub.agencies).unwrap();
    let d = dir.get(D).unwrap();
    assert_eq!(d.name, "Sở D, Thông tin");
    assert_eq!(
        d.push_url.as_deref(),
        Some("https://d.example.vn/lienthong/push")
    );
    assert_eq!(
        dir.get(C).unwrap().cert_sha256.as_deref(),
        Some("ab".repeat(32).as_str())
    );

    // D gets a client certificate from the hub's dev CA; until the reload it is unknown.
    run_ok(
        Command::new(BIN)
            .args(["pki", "init", "--dir"])
            .arg(hub.path("certs"))
            .arg("--agencies")
            .arg(&hub.agencies),
    );
    assert_eq!(inbox_status(&hub, D), "403");
    hub.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(30);
    while inbox_status(&hub, D) != "200" {
        assert!(Instant::now() < deadline, "the reload never took D in");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_sheet_with_mistakes_is_refused_whole_with_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("agencies.toml");
    std::fs::write(&target, SMALL_DIRECTORY).unwrap();
    // Vietnamese-locale Excel: a byte-order mark, semicolons, Vietnamese headers.
    let csv = "\u{feff}Mã định danh;Tên cơ quan;email\n\
               000.00.01.H13;Sở A;a@x.vn\n";
    std::fs::write(dir.path().join("cols.csv"), csv).unwrap();
    let rows = "OrganId,name,parent,push_url,cert_sha256\n\
                000.00.01.H13,Sở A,,,\n\
                000.00.1.h13,Sở B,,,\n\
                000.00.01.H13,Sở A lần hai,,,\n\
                000.00.04.H13,=cmd|' /C calc'!A0,000.00.09.H13,http://d.vn/push,12:34\n";
    std::fs::write(dir.path().join("rows.csv"), rows).unwrap();
    // Windows-1258 bytes, as "CSV" (not "CSV UTF-8") from an old Excel.
    std::fs::write(
        dir.path().join("cp1258.csv"),
        b"OrganId,name\n000.00.01.H13,S\xd2 A\n",
    )
    .unwrap();
    let cases: [(&str, &[&str]); 3] = [
        ("cols.csv", &["row 1, column C (\"email\"): unknown column"]),
        (
            "rows.csv",
            &[
                "6 problem(s)",
                "row 3 (000.00.1.h13): \"000.00.1.h13\" is not an OrganId",
                "row 4: OrganId 000.00.01.H13 is already on row 2",
                "row 5 (000.00.04.H13): the name \"=cmd|' /C calc'!A0\" starts with a spreadsheet formula character",
                "row 5 (000.00.04.H13): push URL \"http://d.vn/push\" must start with https://",
                "row 5 (000.00.04.H13): certificate fingerprint \"1234\" is not a SHA-256",
                "row 5 (000.00.04.H13): parent 000.00.09.H13 is not in the sheet",
            ],
        ),
        ("cp1258.csv", &["save it as \"CSV UTF-8\""]),
    ];
    for (file, expect) in cases {
        let out = lienthong(
            &["directory", "import", file, "--agencies", "agencies.toml"],
            dir.path(),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file}: imported");
        for e in expect {
            assert!(stderr.contains(e), "{file}: {e:?} not in {stderr}");
        }
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            SMALL_DIRECTORY,
            "{file}"
        );
    }
}

/// The 519-agency sample, exported and imported again, as CSV and as XLSX: nothing lost.
#[test]
fn export_then_import_gives_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let original = Directory::parse(lienthong::directory::EMBEDDED).unwrap();
    let mut with_extras = original.agencies().to_vec();
    with_extras[1].signing_cert_sha256 = vec!["cd".repeat(32), "ef".repeat(32)];
    with_extras[1].pdf_signer_names = vec!["Sở Nội vụ, thành phố".into(), "SNV".into()];
    with_extras[2].push_url = Some("https://x.example.vn/push?a=1".into());
    with_extras[2].push_ca = Some("/etc/lienthong/push-ca/x.pem".into());
    let original = Directory::from_agencies(with_extras).unwrap();
    let source = dir.path().join("source.toml");
    std::fs::write(&source, original.to_toml("the source")).unwrap();
    for sheet in ["agencies.csv", "agencies.xlsx"] {
        let back = format!("back-{sheet}.toml");
        for args in [
            ["directory", "export", sheet, "--agencies", "source.toml"],
            ["directory", "import", sheet, "--agencies", &back],
        ] {
            let out = lienthong(&args, dir.path());
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let again = Directory::load(&dir.path().join(&back)).unwrap();
        assert_eq!(again.agencies(), original.agencies(), "{sheet}");
    }
}
