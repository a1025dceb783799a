//! `bitfusion simulate --onnx` and `bitfusion networks FILE.onnx` end to end, on ZigZag's
//! MobileNetV2 (`tests/data/onnx/`, see its README).

mod common;

use common::{bitfusion, data};

fn run(args: &[&str]) -> String {
    let out = bitfusion(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn total_line(table: &str) -> String {
    table.lines().find(|l| l.starts_with("total")).unwrap_or_else(|| panic!("no total in {table}")).to_string()
}

#[test]
fn onnx_simulate_mobilenetv2_equals_the_built_in_network() {
    let file = data("onnx/mobilenetv2.onnx");
    let ours = run(&["simulate", "--onnx", file.to_str().unwrap()]);
    let built = run(&["simulate", "--network", "mobilenet_v2"]);
    assert_eq!(ours.lines().count(), built.lines().count());
    assert_eq!(total_line(&ours), total_line(&built));
    // The same file where a topology CSV or a network name goes.
    assert_eq!(run(&["simulate", "--layers", file.to_str().unwrap()]), ours);
    assert_eq!(run(&["simulate", "--network", file.to_str().unwrap()]), ours);
}

#[test]
fn onnx_networks_prints_the_layers_as_a_topology_csv() {
    let file = data("onnx/mobilenetv2.onnx");
    let csv = run(&["networks", file.to_str().unwrap()]);
    assert_eq!(csv.lines().count(), 54, "{csv}");
    assert!(csv.starts_with("name,kind,batch,in_channels,out_channels,in_h,in_w,kernel,stride,pad,groups,w_bits,a_bits,im2col\n"));
    // The CSV reads back and simulates like the ONNX file.
    let dir = common::scratch("onnx", "csv");
    let p = dir.join("mbv2.csv");
    std::fs::write(&p, &csv).unwrap();
    let a = run(&["simulate", "--layers", p.to_str().unwrap(), "--batch", "2", "--w-bits", "4"]);
    let b = run(&["simulate", "--onnx", file.to_str().unwrap(), "--batch", "2", "--w-bits", "4"]);
    assert_eq!(a, b);
}

#[test]
fn onnx_errors_are_one_line_naming_file_node_and_op() {
    let file = data("onnx/conv2d_dilated.onnx");
    let out = bitfusion(&["simulate", "--onnx", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end(), format!("error: {}: node '3' (Conv): dilation [2, 2] is not supported", file.display()));
    let junk = common::scratch("onnx", "junk").join("junk.onnx");
    std::fs::write(&junk, b"\x0a\xff\xff").unwrap();
    let out = bitfusion(&["networks", junk.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: ") && stderr.contains("junk.onnx: not a readable ONNX model: malformed ModelProto"), "{stderr}");
}
