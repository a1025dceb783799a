//! The functional fusion-unit and array models against the RTL's golden files
//! (copied from the project's reference material to `tests/data/rtl/`).

mod common;

use bitfusion_simulator::validate;

#[test]
fn fusion_unit_vectors_replay_without_mismatch() {
    let text = std::fs::read_to_string(common::data("rtl/fusion_unit_vectors.csv")).unwrap();
    let r = validate::fusion_unit_vectors(&text, "fusion_unit_vectors.csv").unwrap();
    assert_eq!(r.cases, 18_341);
    assert!(r.ok(), "{:?}", &r.mismatches[..r.mismatches.len().min(10)]);
}

#[test]
fn corrupted_vectors_are_caught() {
    let text = std::fs::read_to_string(common::data("rtl/fusion_unit_vectors.csv")).unwrap();
    // Flip the output of the first vector.
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let f: Vec<&str> = lines[1].split(',').collect();
    let mut f: Vec<String> = f.into_iter().map(String::from).collect();
    f[13] = (f[13].parse::<i64>().unwrap() + 1).to_string();
    lines[1] = f.join(",");
    let r = validate::fusion_unit_vectors(&(lines.join("\n") + "\n"), "v").unwrap();
    assert_eq!(r.mismatches.len(), 1, "{:?}", r.mismatches);
}

#[test]
fn array_timing_replays_and_recognises_hazards() {
    let text = std::fs::read_to_string(common::data("rtl/array_timing.csv")).unwrap();
    let r = validate::array_timing(&text, "array_timing.csv", 7).unwrap();
    assert!(r.ok(), "{:#?}", &r.mismatches[..r.mismatches.len().min(20)]);
    assert_eq!(r.cases, 231);
    let get = |k: &str| r.details.iter().find(|(d, _)| d.contains(k)).unwrap().1;
    // 231 rows; 26 mismatching RTL rows are hazards (18 unskewed, 8 from mode switches).
    assert_eq!(get("hazards"), 26);
    assert_eq!(get("valid cycles"), 213);
    assert_eq!(get("against the RTL"), 24);
}

#[test]
fn array_timing_detects_a_wrong_cycle() {
    let text = std::fs::read_to_string(common::data("rtl/array_timing.csv")).unwrap();
    let bad = text.replacen("2x2_a8w8_K7,2,2,8,8,1,7,4,0,0,1,0,0,1,4,6,6,6,,", "2x2_a8w8_K7,2,2,8,8,1,7,4,0,0,1,0,0,1,4,7,6,6,,", 1);
    assert_ne!(bad, text);
    let r = validate::array_timing(&bad, "t", 7).unwrap();
    assert!(r.mismatches.iter().any(|m| m.contains("valid in cycle 6, RTL 7")), "{:?}", r.mismatches);
}
