//! The built-in echo upstream (`builtin:echo`, `certgate echo`): answers every request with JSON
//! `{"method", "path", "headers", "body_bytes"}` so that an operator sees exactly what the
//! application would receive.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// Reads the request (its body counted, not kept: a 1 GiB upload costs no memory) and describes it.
pub async fn echo_response<B>(request: Request<B>) -> Response<Full<Bytes>>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, mut body) = request.into_parts();
    let mut body_bytes: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    body_bytes += bytes::Buf::remaining(data) as u64;
                }
            }
            Err(err) => {
                let err: Box<dyn std::error::Error + Send + Sync> = err.into();
                let mut response = Response::new(Full::new(Bytes::from(format!(
                    "request body failed: {err}\n"
                ))));
                *response.status_mut() = if err.is::<crate::http::BodyStalled>() {
                    StatusCode::REQUEST_TIMEOUT
                } else {
                    StatusCode::BAD_REQUEST
                };
                return response;
            }
        }
    }
    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect();
        headers.insert(
            name.as_str().to_owned(),
            serde_json::Value::String(values.join(", ")),
        );
    }
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "path": path,
        "headers": headers,
        "body_bytes": body_bytes,
    });
    let mut response = Response::new(Full::new(Bytes::from(format!("{json}\n"))));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `certgate echo --listen ADDR`: serves the echo over plain HTTP/1.1 and h2c until killed.
pub async fn serve_echo(listener: TcpListener) -> std::io::Result<()> {
    let address: SocketAddr = listener.local_addr()?;
    tracing::info!(%address, "echo listening");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service =
                service_fn(|request| async { Ok::<_, Infallible>(echo_response(request).await) });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
