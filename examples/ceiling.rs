//! The benchmark's ceiling: the fastest answer this stack can give, with no database, no token
//! check and no directory. One axum 0.8 route on the default multi-thread tokio runtime (the
//! same runtime settings and allocator as `contactsd serve`) answers every GET with a fixed JSON body of a
//! given size. `bench/run` sizes the body like a real 10-group list page and drives it with the
//! same load as the "list groups page 1" scenario.
//!
//! Usage: cargo run --release --example ceiling -- 127.0.0.1:PORT BODY_BYTES

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

/// The allocator of `contactsd serve`, so that the comparison is of the work done, not of the
/// allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8090".to_string());
    let size: usize = args
        .next()
        .map(|raw| raw.parse().expect("BODY_BYTES must be a number"))
        .unwrap_or(3000);
    let body: Arc<[u8]> = Arc::from(fixed_body(size).into_bytes());
    let app = Router::new().fallback(get(move || {
        let body = body.clone();
        async move {
            (
                [(header::CONTENT_TYPE, "application/json")],
                axum::body::Bytes::copy_from_slice(&body),
            )
                .into_response()
        }
    }));
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .expect("cannot listen");
    println!("ceiling listening on {listen}, body {size} bytes");
    axum::serve(listener, app).await.expect("server failed");
}

/// A valid JSON envelope padded to exactly `size` bytes (at least the envelope's own length).
fn fixed_body(size: usize) -> String {
    let head = r#"{"code":"OK","error":{"type":""},"data":{"list":[],"total":0},"request_id":""#;
    let tail = r#""}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "0".repeat(pad))
}
