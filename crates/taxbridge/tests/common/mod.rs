//! Test support shared by the binary's test suites.

use std::io::{Read, Write};

/// What [`loopback_server`] answers a request: status (e.g. `200 OK`), content type, body.
pub type Answer = (&'static str, &'static str, Vec<u8>);

/// A plain HTTP/1.1 server on loopback, a thread per connection, one request per connection:
/// `answer` gets the request path. Returns its base URL.
pub fn loopback_server(answer: fn(&str) -> Answer) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split_whitespace().nth(1).unwrap_or_default();
                let (status, kind, body) = answer(path);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            });
        }
    });
    base
}
