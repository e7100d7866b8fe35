//! Scraping a `/metrics` endpoint with a parser nobody here wrote: Python's
//! `prometheus_client.parser`, run as a child process.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

/// Fetches `argv[1]` (with `argv[2]` as a bearer token, if given), parses it with
/// prometheus_client and prints `{"status": N, "samples": [[name, labels, value]]}`.
const SCRAPE: &str = r#"
import json, sys, urllib.error, urllib.request
from prometheus_client.parser import text_string_to_metric_families

req = urllib.request.Request(sys.argv[1])
if len(sys.argv) > 2:
    req.add_header("Authorization", "Bearer " + sys.argv[2])
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
        status = r.status
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "samples": []}))
    sys.exit(0)
samples = []
for family in text_string_to_metric_families(text):
    for s in family.samples:
        samples.append([s.name, s.labels, s.value])
print(json.dumps({"status": status, "samples": samples}))
"#;

/// Whether python3 with `prometheus_client` is here. Without it a test prints
/// "skipped" and passes, unless `AUTH_METRICS_PROMETHEUS_TEST=required` (as `.ci/run`
/// sets), which makes this panic.
pub fn parser_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import prometheus_client.parser"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var("AUTH_METRICS_PROMETHEUS_TEST").as_deref() == Ok("required") {
        panic!(
            "AUTH_METRICS_PROMETHEUS_TEST=required but python3 with prometheus_client is missing"
        );
    }
    ok
}

/// What one scrape returned: the HTTP status and each sample by `name{labels}`.
pub struct Scrape {
    /// The HTTP status.
    pub status: u16,
    /// Each sample by `name{label=value,...}` (labels in name order).
    pub samples: BTreeMap<String, f64>,
}

impl Scrape {
    /// The sample `key`; panics (listing the keys) when it is missing.
    pub fn get(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key}; have {:#?}", self.samples.keys()))
    }
}

/// Fetches and parses `url`, with a bearer `token` if given.
pub fn scrape(url: &str, token: Option<&str>) -> Scrape {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(SCRAPE).arg(url);
    if let Some(t) = token {
        cmd.arg(t);
    }
    let out = cmd.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut samples = BTreeMap::new();
    for s in v["samples"].as_array().unwrap() {
        let labels = s[1].as_object().unwrap();
        let mut key = s[0].as_str().unwrap().to_owned();
        if !labels.is_empty() {
            let inner: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
                .collect();
            key = format!("{key}{{{}}}", inner.join(","));
        }
        samples.insert(key, s[2].as_f64().unwrap());
    }
    Scrape {
        status: u16::try_from(v["status"].as_u64().unwrap()).unwrap(),
        samples,
    }
}

/// [`scrape`], retried (bounded) until the endpoint answers.
pub fn wait_scrapeable(url: &str, token: Option<&str>) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = std::panic::catch_unwind(|| scrape(url, token));
        match s {
            Ok(s) => return s,
            Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => std::panic::resume_unwind(e),
        }
    }
}
