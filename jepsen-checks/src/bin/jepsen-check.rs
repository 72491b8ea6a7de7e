//! `jepsen-check HISTORY.jsonl`: checks a history from any source and prints the
//! anomalies with the operations that prove them. Exits 1 if any were found.

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: jepsen-check HISTORY.jsonl");
        std::process::exit(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("reading {path}: {e}");
            std::process::exit(2);
        }
    };
    let ops = match jepsen_checks::history::parse(&text) {
        Ok(ops) => ops,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
    };
    let report = jepsen_checks::check_all(&ops);
    println!("{} operations", ops.len());
    print!("{}", report.render(5));
    std::process::exit(if report.is_valid() { 0 } else { 1 });
}
