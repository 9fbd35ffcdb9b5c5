//! Research exports after a full study replay: the wide export read back
//! recomputes the published category agreement, the Excel variant and the
//! codebook have the documented shape, and small filtered exports are refused.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};

use common::{Service, TestConfig, client, free_port};

/// Parses RFC 4180 CSV with the given separator: quoted fields may hold the
/// separator, doubled quotes and line breaks.
fn parse_csv(text: &str, separator: char) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => quoted = false,
                other => field.push(other),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            c if c == separator => row.push(std::mem::take(&mut field)),
            other => field.push(other),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// Rows as maps from column name to value.
fn records(text: &str, separator: char) -> Vec<HashMap<String, String>> {
    let mut rows = parse_csv(text, separator).into_iter();
    let header = rows.next().expect("a header row");
    rows.map(|row| {
        assert_eq!(row.len(), header.len(), "every row has as many cells as the header");
        header.iter().cloned().zip(row).collect()
    })
    .collect()
}

fn export(service: &Service, query: &str) -> (u16, String) {
    let response = client()
        .get(service.url(&format!("/api/admin/export?{query}")))
        .bearer_auth(&service.config.admin_token)
        .send()
        .expect("export request");
    let status = response.status().as_u16();
    (status, response.text().expect("export body"))
}

/// Cohen's kappa of a 3×3 table, written out here independently of the service.
fn kappa(table: &[[f64; 3]; 3]) -> f64 {
    let n: f64 = table.iter().flatten().sum();
    let observed: f64 = (0..3).map(|i| table[i][i]).sum::<f64>() / n;
    let expected: f64 = (0..3)
        .map(|i| {
            let row: f64 = table[i].iter().sum();
            let column: f64 = (0..3).map(|r| table[r][i]).sum();
            row * column / (n * n)
        })
        .sum();
    (observed - expected) / (1.0 - expected)
}

#[test]
fn exports_after_study_replay() {
    let dir = tempfile::tempdir().unwrap();
    let platform_url = format!("http://127.0.0.1:{}", free_port());
    let config = TestConfig::new(dir.path(), &platform_url);
    let service = Service::start(&config);

    let mut demo = Command::new(common::binary());
    config.apply(&mut demo);
    let output = demo
        .args(["demo", "--exit", "--format", "json", "--target"])
        .arg(config.base_url())
        .stderr(Stdio::piped())
        .output()
        .expect("alliance demo runs");
    assert!(
        output.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Wide: read back and recompute category agreement.
    let (status, wide) = export(&service, "layout=wide");
    assert_eq!(status, 200, "{wide}");
    let rows = records(&wide, ',');
    assert_eq!(rows.len(), 8527, "one row per chat");
    let mut table = [[0u64; 3]; 3];
    let mut agreeing_flags = 0;
    for row in rows.iter().filter(|row| row["pair"] == "1") {
        let parent: usize = row["parent_category"].parse().unwrap();
        let professional: usize = row["professional_category"].parse().unwrap();
        table[parent][professional] += 1;
        agreeing_flags += u64::from(row["category_agree"] == "1");
    }
    assert_eq!(table, [[0, 0, 0], [0, 20, 18], [0, 65, 115]]);
    let agreeing: u64 = (0..3).map(|i| table[i][i]).sum();
    assert_eq!(agreeing, 135);
    assert_eq!(agreeing_flags, 135);
    let as_float = table.map(|row| row.map(|count| count as f64));
    assert!((kappa(&as_float) - 0.111).abs() < 0.0005, "kappa {}", kappa(&as_float));

    let item_agreeing: u64 = rows
        .iter()
        .filter(|row| row["pair"] == "1")
        .map(|row| row["items_agreeing"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(item_agreeing, 1485, "item agreement over 218 × 11 answers");
    let parent_complete = rows.iter().filter(|row| row["parent_complete"] == "1").count();
    assert_eq!(parent_complete, 487);

    for row in &rows {
        let chat = &row["chat"];
        assert_eq!(chat.len(), 64, "chat pseudonym {chat}");
        assert!(chat.bytes().all(|b| b.is_ascii_hexdigit()), "chat pseudonym {chat}");
        assert!(row["ended_date"].len() == 10 && row["ended_date"].starts_with("2022-"));
    }
    let answered = rows.iter().find(|row| row["pair"] == "1").unwrap();
    assert_eq!(answered["parent_instrument_version"], "voa-2022");
    assert!(!answered["parent_lang"].is_empty(), "language per response");
    assert!(
        !wide.lines().next().unwrap().contains("comment"),
        "no comments unless asked"
    );

    // Long: one row per item of every started response.
    let (status, long) = export(&service, "layout=long");
    assert_eq!(status, 200);
    let long_rows = records(&long, ',');
    assert_eq!(long_rows.len() % 11, 0);
    let pair_answers = long_rows
        .iter()
        .filter(|row| row["pair"] == "1" && !row["rating"].is_empty())
        .count();
    assert_eq!(pair_answers, 218 * 2 * 11);

    // Funnel: the overall row carries the published counts.
    let (status, funnel) = export(&service, "layout=funnel");
    assert_eq!(status, 200);
    let funnel_rows = records(&funnel, ',');
    let overall = &funnel_rows[0];
    assert_eq!(overall["dimension"], "overall");
    assert_eq!(overall["pairs"], "218");
    assert_eq!(overall["parent_complete"], "487");
    assert_eq!(overall["professional_complete"], "2334");
    assert_eq!(overall["category_agreeing"], "135");
    let suppressed = funnel_rows.iter().filter(|row| row["suppressed"] == "1").count();
    assert!(suppressed > 0, "small strata are suppressed");
    for row in funnel_rows.iter().filter(|row| row["suppressed"] == "1") {
        assert_eq!(row["pairs"], "", "a suppressed stratum shows no figures");
    }

    // Excel: byte-order mark, semicolons, decimal commas.
    let (status, excel) = export(&service, "layout=funnel&excel=true");
    assert_eq!(status, 200);
    let without_bom = excel.strip_prefix('\u{feff}').expect("a byte-order mark");
    let excel_rows = records(without_bom, ';');
    assert_eq!(excel_rows[0]["category_percent"], "61,93");

    // A filtered export with fewer pairs than the minimum cell size is refused.
    let (status, body) = export(&service, "layout=wide&topic=opvoeding");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("too_few_pairs"), "{body}");

    // The command line asks the service and writes the codebook and SPSS syntax.
    let out_dir = dir.path().join("export");
    let data_file = dir.path().join("alliance-wide.csv");
    let mut command = Command::new(common::binary());
    config.apply(&mut command);
    let output = command
        .args(["export", "--layout", "wide", "--server"])
        .arg(config.base_url())
        .arg("--output")
        .arg(&data_file)
        .arg("--codebook")
        .arg(&out_dir)
        .output()
        .expect("alliance export runs");
    assert!(
        output.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(std::fs::read_to_string(&data_file).unwrap(), wide);
    let codebook = std::fs::read_to_string(out_dir.join("alliance-wide-codebook.csv")).unwrap();
    let codebook_rows = records(&codebook, ',');
    let header = wide.lines().next().unwrap().split(',').count();
    assert_eq!(codebook_rows.len(), header, "one codebook row per column");
    let syntax = std::fs::read_to_string(out_dir.join("alliance-wide.sps")).unwrap();
    assert!(syntax.contains("/FILE='alliance-wide.csv'"));
    assert!(syntax.contains("VALUE LABELS"));
}
