//! Defects found by trying the tool with bad input (issue 15): each test reproduces one that was
//! silently wrong or crashed, through the binary as a user meets it.

mod common;

use common::{bitfusion, scratch};
use std::io::Read;
use std::process::{Command, Stdio};

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The one `error:` line of a failed run (which must not have panicked).
fn error_of(args: &[&str]) -> String {
    let out = bitfusion(args);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?} should exit 1; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    let errors: Vec<&str> = stderr.lines().collect();
    assert_eq!(errors.len(), 1, "{args:?}: expected one line, got: {stderr}");
    assert!(errors[0].starts_with("error: "), "{stderr}");
    errors[0].to_string()
}

/// Run with stdout on a pipe whose reader reads `keep` bytes and then closes it.
fn with_closed_pipe(args: &[&str], keep: usize) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bitfusion"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bitfusion");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = vec![0u8; keep];
    stdout.read_exact(&mut first).expect("the command printed something");
    drop(stdout);
    child.wait_with_output().expect("wait")
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    for args in [
        &["space", "apq", "--random", "20000"][..],
        &["networks", "mobilenet_v2"],
        &["simulate", "--network", "resnet18", "--batch", "16"],
        &["paper"],
    ] {
        let out = with_closed_pipe(args, 16);
        let stderr = stderr_of(&out);
        assert!(!stderr.contains("panicked") && out.status.code() != Some(101), "{args:?}: {:?} {stderr}", out.status);
        assert!(stderr.is_empty(), "{args:?} printed: {stderr}");
    }
}

#[test]
fn a_layer_too_large_to_count_is_refused_naming_its_column() {
    let d = scratch("bad", "huge");
    let topo = d.join("t.csv");
    std::fs::write(
        &topo,
        "name,kind,batch,in_channels,out_channels,in_h,in_w,kernel,stride,pad,groups,w_bits,a_bits,im2col\n\
         huge,conv,1,65536,65536,65536,65536,1,1,0,1,8,8,\n",
    )
    .unwrap();
    for model in ["reference", "cycle"] {
        let e = error_of(&["simulate", "--layers", topo.to_str().unwrap(), "--model", model]);
        assert!(e.contains("t.csv:2: column 'in_channels'") && e.contains("above the limit of 2^46"), "{e}");
    }
}

#[test]
fn config_errors_name_the_key_and_paths_are_not_guessed() {
    let e = error_of(&["hw", "--hw", "bitfusion-isca2018", "--set", "array.rows=abc"]);
    assert!(e.contains("--set array.rows=abc: array.rows: expected an integer, found string \"abc\""), "{e}");
    let e = error_of(&["hw", "--hw", "/no/such/dir/bitfusion-8x8.toml"]);
    assert!(e.contains("/no/such/dir/bitfusion-8x8.toml: no such file"), "{e}");
    let e = error_of(&["hw", "--set", "array.rows=8\narray.cols=8"]);
    assert!(e.contains("must be on one line"), "{e}");
    // Control characters from the input are shown escaped, never sent to the terminal.
    let e = error_of(&["simulate", "--network", "evil\u{1b}[2Jnet"]);
    assert!(e.contains("evil\\u{1b}[2Jnet") && !e.contains('\u{1b}'), "{e}");
}

#[test]
fn argument_errors_are_one_line_with_exit_1() {
    let e = error_of(&["simulate", "--networkk", "lenet5"]);
    assert!(e.contains("unexpected argument '--networkk'") && e.contains("--help"), "{e}");
    let e = error_of(&["simulate"]);
    assert!(e.contains("the following required arguments were not provided: --layers <LAYERS>"), "{e}");
    let e = error_of(&["frobnicate"]);
    assert!(e.contains("unrecognized subcommand 'frobnicate'"), "{e}");
    let help = bitfusion(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage:"));
}

#[test]
fn a_second_writer_of_one_output_is_refused() {
    let d = scratch("bad", "lock");
    let spec = d.join("s.toml");
    std::fs::write(&spec, "base = \"bitfusion-isca2018\"\nworkloads = [\"lenet5\"]\n[axes]\n\"array.rows\" = [8, 16]\n").unwrap();
    let out = d.join("out");
    let held = bitfusion_util::OutputLock::dir(&out).unwrap();
    let e = error_of(&["sweep", spec.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(e.contains("another bitfusion process is writing it"), "{e}");
    assert!(!out.join("results.csv").exists());
    drop(held);
    assert!(bitfusion(&["sweep", spec.to_str().unwrap(), "--out", out.to_str().unwrap()]).status.success());
    let lut = d.join("lut.json");
    let held = bitfusion_util::OutputLock::file(&lut).unwrap();
    let e = error_of(&["lut", "build", "--space", "micro", "--out", lut.to_str().unwrap()]);
    assert!(e.contains("lut.json: another bitfusion process"), "{e}");
    drop(held);
}

#[test]
fn a_shard_of_a_million_point_sweep_builds_only_its_own_points() {
    let d = scratch("bad", "million");
    let spec = d.join("s.toml");
    std::fs::write(
        &spec,
        "base = \"bitfusion-isca2018\"\nmodel = \"reference\"\nworkloads = [\"lenet5\"]\n[axes]\n\
         \"clock.frequency_mhz\" = { start = 1, stop = 1000, step = 1 }\n\
         \"memory.dram_bits_per_cycle\" = { start = 8, stop = 8000, step = 8 }\n",
    )
    .unwrap();
    let out = d.join("out");
    let run = bitfusion(&["sweep", spec.to_str().unwrap(), "--out", out.to_str().unwrap(), "--shard", "7/250000"]);
    assert!(run.status.success(), "{}", stderr_of(&run));
    let text = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(text.lines().count(), 1 + 4, "{text}");
    // Too many points: refused at once, naming the count and the axes.
    std::fs::write(&spec, format!("{}\"array.rows\" = {{ start = 1, stop = 1000, step = 1 }}\n", std::fs::read_to_string(&spec).unwrap())).unwrap();
    let e = error_of(&["sweep", spec.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(e.contains("1.000e9 jobs (array.rows: 1000 x clock.frequency_mhz: 1000 x memory.dram_bits_per_cycle: 1000"), "{e}");
}

#[test]
fn a_torn_last_results_row_is_dropped_and_run_again() {
    let d = scratch("bad", "torn");
    let spec = d.join("s.toml");
    std::fs::write(&spec, "base = \"bitfusion-isca2018\"\nworkloads = [\"lenet5\"]\n[axes]\n\"array.rows\" = [8, 16, 32]\n").unwrap();
    let out = d.join("out");
    let sweep = || bitfusion(&["sweep", spec.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(sweep().status.success());
    let results = out.join("results.csv");
    let whole = std::fs::read_to_string(&results).unwrap();
    let layers = std::fs::read_to_string(out.join("layers.csv")).unwrap();
    // Cut the file in the middle of its last row, as a kill or a full disk would.
    let cut = whole.trim_end().rfind(',').unwrap();
    std::fs::write(&results, &whole[..cut]).unwrap();
    let again = sweep();
    assert!(again.status.success(), "{}", stderr_of(&again));
    assert!(stderr_of(&again).contains("(2 already done, 1 run)"), "{}", stderr_of(&again));
    assert_eq!(std::fs::read_to_string(&results).unwrap(), whole);
    assert_eq!(std::fs::read_to_string(out.join("layers.csv")).unwrap(), layers);
}

#[test]
fn a_predictor_of_the_wrong_kind_says_what_it_is() {
    let d = scratch("bad", "predictor");
    let lut = d.join("lut.json");
    assert!(bitfusion(&["lut", "build", "--space", "micro", "--out", lut.to_str().unwrap()]).status.success());
    let artifacts = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/artifacts/micro");
    let search = |predictor: &std::path::Path| {
        error_of(&["search", "--space", "micro", "--lut", lut.to_str().unwrap(), "--predictor", predictor.to_str().unwrap(), "--latency-ms", "1", "--out", d.join("s").to_str().unwrap()])
    };
    let e = search(&lut);
    assert!(e.contains("this is a lookup table"), "{e}");
    let e = search(&artifacts.join("supernet.ckpt"));
    assert!(e.contains("this is a supernet checkpoint"), "{e}");
    let e = search(&artifacts.join("pairs_quant.jsonl"));
    assert!(e.contains("this is a pair file"), "{e}");
    let e = error_of(&["search", "--space", "micro", "--lut", lut.to_str().unwrap(), "--predictor", lut.to_str().unwrap(), "--latency-ms", "1", "--population", "10", "--parents", "20", "--out", d.join("s").to_str().unwrap()]);
    assert!(e.contains("--parents 20 is more than --population 10"), "{e}");
    let e = error_of(&["predictor", "train", "--data", lut.to_str().unwrap(), "--out", d.join("p.pred").to_str().unwrap()]);
    assert!(e.contains("no pair records in it; is it a pair file"), "{e}");
}
