//! The load generator of `bench/scim`: sends the SCIM requests it is given exactly as given, one
//! HTTP request each, over a fixed number of keep-alive connections (one per worker, all on one
//! thread), and reports every answer. `bench/scim.py` makes the requests and checks the answers;
//! this only sends them, so that the client takes as little of the machine as it can.
//!
//! Usage: scim_load ADDR TOKEN CONCURRENCY < REQUESTS > ANSWERS
//!
//! Each line of REQUESTS is a JSON array `[method, path, body]` (`body` a JSON value, or `null`
//! for none). ANSWERS has a first line `{"elapsed": seconds}` (from the first request sent to the
//! last answer read), then one line per request, in the requests' order: `[status, seconds,
//! body]`, the answer's status (0 when none came: the body is then the error), the request's
//! latency and the answer's body as text.

use std::io::{BufRead, BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;

const SCIM_JSON: &str = "application/scim+json";

/// A request to send: method, path and query, body.
type Request = (Method, String, Option<String>);
/// An answer: status (0: none), latency in seconds, body (or the error).
type Answer = (u16, f64, String);

fn parse(line: &str) -> Result<Request, String> {
    let (method, path, body): (String, String, Value) =
        serde_json::from_str(line).map_err(|e| format!("bad request line {line:?}: {e}"))?;
    let method = Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let body = (!body.is_null()).then(|| body.to_string());
    Ok((method, path, body))
}

async fn send(
    client: &reqwest::Client,
    base: &str,
    bearer: &str,
    (method, path, body): &Request,
) -> reqwest::Result<(u16, String)> {
    let mut request = client
        .request(method.clone(), format!("{base}{path}"))
        .header(AUTHORIZATION, bearer)
        .header(ACCEPT, SCIM_JSON);
    if let Some(body) = body {
        request = request.header(CONTENT_TYPE, SCIM_JSON).body(body.clone());
    }
    let answer = request.send().await?;
    let status = answer.status().as_u16();
    Ok((status, answer.text().await?))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, token, concurrency] = args.as_slice() else {
        return Err("usage: scim_load ADDR TOKEN CONCURRENCY < REQUESTS > ANSWERS".into());
    };
    let concurrency: usize = concurrency.parse()?;
    let requests: Vec<Request> = std::io::stdin()
        .lock()
        .lines()
        .map(|line| parse(&line.map_err(|e| e.to_string())?))
        .collect::<Result<_, String>>()?;
    let requests = Arc::new(requests);
    // Plain HTTP only, but the client wants a TLS provider all the same.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let base = Arc::new(format!("http://{addr}"));
    let bearer = Arc::new(format!("Bearer {token}"));
    let next = Arc::new(AtomicUsize::new(0));

    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (client, base, bearer) = (client.clone(), base.clone(), bearer.clone());
            let (requests, next) = (requests.clone(), next.clone());
            tokio::spawn(async move {
                let mut answers: Vec<(usize, Answer)> = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(request) = requests.get(index) else {
                        return answers;
                    };
                    let sent = Instant::now();
                    let (status, body) = match send(&client, &base, &bearer, request).await {
                        Ok(answer) => answer,
                        Err(error) => (0, error.to_string()),
                    };
                    answers.push((index, (status, sent.elapsed().as_secs_f64(), body)));
                }
            })
        })
        .collect();
    let mut answers: Vec<Option<Answer>> = vec![None; requests.len()];
    for worker in workers {
        for (index, answer) in worker.await? {
            answers[index] = Some(answer);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();

    let mut out = BufWriter::new(std::io::stdout().lock());
    writeln!(out, "{}", serde_json::json!({ "elapsed": elapsed }))?;
    for answer in answers {
        let answer = answer.unwrap_or((0, 0.0, "never sent".to_owned()));
        serde_json::to_writer(&mut out, &answer)?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}
