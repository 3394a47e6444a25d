//! Times one search of a directory, as the jailer (links) and the
//! supervisor (no links) make it: `cargo run --release -p aiops-guard
//! --example search -- DIR`. bench/guard.sh measures the whole `exec`.
use aiops_proto::plan::GuardPlan;
use std::time::Instant;

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: search DIR");
        std::process::exit(2);
    };
    let plan = GuardPlan {
        roots: vec![aiops_proto::path::AbsPath::new(&dir).expect("an absolute path")],
        ..GuardPlan::DEFAULT
    };
    for links in [true, false] {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            let f = aiops_guard::search(&plan, None, links);
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
            if let Err(e) = f {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
        println!("links={links}: {best:.2} ms (best of 5)");
    }
}
