//! The published figures of the 2022 GroeiGids measurement, written out
//! here so the tests check the report against the publication itself.

/// Table 2: per item, parent (insufficient, sufficient, good) then
/// professional (insufficient, sufficient, good), over the 218 matched pairs.
pub const TABLE_2: [[u64; 6]; 11] = [
    [1, 30, 187, 1, 83, 134],
    [3, 27, 188, 0, 83, 135],
    [2, 20, 196, 0, 81, 137],
    [2, 38, 178, 0, 88, 130],
    [4, 30, 184, 0, 84, 134],
    [7, 36, 175, 0, 84, 134],
    [3, 43, 172, 1, 83, 134],
    [5, 50, 163, 1, 81, 136],
    [4, 51, 163, 1, 85, 132],
    [2, 33, 183, 0, 87, 131],
    [7, 31, 180, 1, 84, 133],
];

/// Asserts every published number in a report JSON.
pub fn assert_report_matches_publication(report: &serde_json::Value) {
    assert_eq!(report["chats"], 8527, "chats");
    assert_eq!(report["questionnaires"]["parent"]["invited"], 8527);
    assert_eq!(report["questionnaires"]["professional"]["invited"], 8527);
    assert_eq!(
        report["questionnaires"]["parent"]["complete"], 487,
        "complete parent questionnaires"
    );
    assert_eq!(
        report["questionnaires"]["professional"]["complete"], 2334,
        "complete professional questionnaires"
    );
    assert_eq!(report["pairs"], 218, "matched pairs");

    let rounded = |value: &serde_json::Value| (value.as_f64().unwrap() * 10.0).round() / 10.0;
    assert_eq!(rounded(&report["rates"]["parent"]["percent"]), 5.7);
    assert_eq!(rounded(&report["rates"]["professional"]["percent"]), 27.4);
    assert_eq!(rounded(&report["rates"]["pairs"]["percent"]), 2.6);

    let items = report["items"].as_array().expect("items");
    assert_eq!(items.len(), 11);
    for (index, expected) in TABLE_2.iter().enumerate() {
        let item = &items[index];
        assert_eq!(item["number"], index + 1);
        let actual = [
            &item["parent"]["insufficient"],
            &item["parent"]["sufficient"],
            &item["parent"]["good"],
            &item["professional"]["insufficient"],
            &item["professional"]["sufficient"],
            &item["professional"]["good"],
        ]
        .map(|value| value.as_u64().unwrap());
        assert_eq!(&actual, expected, "Table 2, item {}", index + 1);
    }

    let category = &report["agreement"]["category"];
    assert_eq!(category["agreeing"], 135);
    assert_eq!(category["pairs"], 218);
    assert_eq!(category["percent"].as_f64().unwrap().round(), 62.0);
    assert_eq!(category["percent"], 61.93);
    assert_eq!(category["ci95"][0], 55.33);
    assert_eq!(category["ci95"][1], 68.11);
    assert_eq!(report["agreement"]["items"]["percent"], 61.93);
    assert_eq!(report["agreement"]["all_items"]["agreeing"], 95);

    let coefficients = &report["agreement"]["category_coefficients"];
    let three = |value: &serde_json::Value| (value.as_f64().unwrap() * 1000.0).round() / 1000.0;
    assert_eq!(three(&coefficients["kappa"]["value"]), 0.111, "chat-level kappa");
    assert_eq!(three(&coefficients["ac1"]["value"]), 0.523, "chat-level AC1");
}
