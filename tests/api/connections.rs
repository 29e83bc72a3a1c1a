//! Limits of the connection layer: a client that is slow to send its headers or its body, or
//! that opens too many connections, cannot hold the server; each limit ends in a clear answer
//! or a closed connection, and the server goes on serving everyone else.

use std::time::{Duration, Instant};

use contactsd::http::{ConnectionSettings, HttpStatus};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, assert_error, groups_path, test_http_status};

fn tight(max_connections: usize) -> ConnectionSettings {
    ConnectionSettings {
        max_connections,
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        ..ConnectionSettings::default()
    }
}

async fn connect(app: &TestApp) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    TcpStream::connect(address)
        .await
        .expect("could not connect to the test server")
}

/// Everything the server sends until it closes the connection (bounded by `within`).
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buffer = [0_u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&received).into_owned())
}

#[tokio::test]
async fn a_client_slow_to_send_its_headers_is_disconnected() {
    let app = TestApp::builder().connections(tight(64)).spawn().await;
    let mut slow = connect(&app).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let answer = read_until_closed(&mut slow, Duration::from_secs(5))
        .await
        .expect("the server must close a connection whose headers never finish");
    assert!(
        !answer.contains("200 OK"),
        "an unfinished request must not be served: {answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // An idle kept-alive connection is closed the same way.
    let mut idle = connect(&app).await;
    let answer = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert_eq!(answer.as_deref(), Some(""), "an idle connection is closed");

    // Everyone else is still served.
    let api = app.team_api().await;
    assert_eq!(api.list_groups(app.team_id, "").await.total, 0);
}

#[tokio::test]
async fn a_body_that_stalls_fails_the_request_in_the_envelope() {
    let app = TestApp::builder().connections(tight(64)).spawn().await;
    let api = app.team_api().await;
    let target = api.authed(&groups_path(app.team_id));
    let mut stream = connect(&app).await;
    let head = format!(
        "POST {target} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: 100\r\n\r\n{{\"name\":"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let answer = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("the server must answer a stalled body");
    let status = match test_http_status() {
        HttpStatus::Mapped => "HTTP/1.1 400",
        HttpStatus::Ok => "HTTP/1.1 200",
    };
    assert!(answer.starts_with(status), "{answer}");
    let body = &answer[answer.find("\r\n\r\n").map_or(0, |at| at + 4)..];
    let body: Value = serde_json::from_str(body).expect("an envelope");
    assert_eq!(body["code"], "InvalidArgument");
    assert_eq!(body["error"]["type"], "invalid_argument");

    // Nothing was created, and the server goes on serving.
    assert_eq!(api.list_groups(app.team_id, "").await.total, 0);
}

#[tokio::test]
async fn connections_beyond_the_limit_get_a_clear_429_and_others_go_on() {
    let app = TestApp::builder()
        .connections(ConnectionSettings {
            max_connections: 2,
            ..ConnectionSettings::default()
        })
        .spawn()
        .await;
    let held = [connect(&app).await, connect(&app).await];

    let extra = crate::helpers::http_client();
    let response = app.send(extra.get(app.url("/api/orgs/1"))).await;
    assert_error(&response, 429, "ResourceExhausted", "request_rate_limited");
    assert_eq!(response.header("retry-after"), Some("1"));

    // Once the held connections close, new ones are served again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let response = app
            .send(crate::helpers::http_client().get(app.url("/api/orgs/1")))
            .await;
        if response.status != 429 {
            assert_error(&response, 401, "PermissionDenied", "invalid_token");
            break;
        }
        assert!(Instant::now() < deadline, "the limit was never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A connection from `127.0.0.x` (Linux routes all of 127/8 to loopback).
async fn connect_from(app: &TestApp, last: u8) -> TcpStream {
    let address: std::net::SocketAddr = app
        .address
        .trim_start_matches("http://")
        .parse()
        .expect("the test server's address");
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, last], 0)))
        .expect("bind to a loopback address");
    socket
        .connect(address)
        .await
        .expect("could not connect to the test server")
}

/// `/healthz` from `127.0.0.x`: the status line of its answer.
async fn health_from(app: &TestApp, last: u8) -> String {
    let mut stream = connect_from(app, last).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("an answer to /healthz")
}

#[tokio::test]
async fn one_address_flooding_connections_cannot_starve_the_others() {
    let app = TestApp::builder()
        .connections(ConnectionSettings {
            max_connections: 64,
            max_connections_per_address: 16,
            ..ConnectionSettings::default()
        })
        .spawn()
        .await;
    // 100 connections from one address, each trickling an unfinished request head.
    let mut flood = Vec::new();
    for _ in 0..100 {
        let mut stream = connect_from(&app, 2).await;
        let _ = stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n")
            .await;
        flood.push(stream);
    }
    // Everyone else is served at once, every time.
    for _ in 0..6 {
        let answer = health_from(&app, 1).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(!answer.contains("request_rate_limited"), "{answer}");
    }
    // The flooding address itself is told why (HTTP 429 in the mapped status mode).
    let answer = health_from(&app, 2).await;
    assert!(answer.contains("\"request_rate_limited\""), "{answer}");
    drop(flood);
}

#[tokio::test]
async fn request_heads_over_64_kib_are_refused_and_smaller_ones_served() {
    let app = TestApp::builder().connections(tight(64)).spawn().await;
    let send_head = |headers: usize| {
        let app = &app;
        async move {
            let mut stream = connect_from(app, 1).await;
            let mut head = String::from("GET /healthz HTTP/1.1\r\nhost: localhost\r\n");
            for n in 0..headers {
                head.push_str(&format!("x-padding-{n}: {}\r\n", "p".repeat(8_000)));
            }
            head.push_str("connection: close\r\n\r\n");
            let _ = stream.write_all(head.as_bytes()).await;
            read_until_closed(&mut stream, Duration::from_secs(5))
                .await
                .unwrap_or_default()
        }
    };
    // 7 headers of 8 KB: about 56 KB, served.
    let answer = send_head(7).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.200}");
    // 9 of them: about 72 KB, refused by the HTTP layer before any handler runs.
    let answer = send_head(9).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.200}");
    // 50 of them (400 KB, once accepted): refused as well.
    let answer = send_head(50).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.200}");
    assert!(health_from(&app, 1).await.starts_with("HTTP/1.1 200 OK"));
}
