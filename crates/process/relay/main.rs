//! codemill-relay: the first process inside a sandbox that has no network of its own.
//!
//! Usage: `codemill-relay [--listen PORT=SOCKET]... -- PROGRAM [ARGS...]`
//!
//! For every `--listen` it accepts TCP connections on 127.0.0.1:PORT (the only interface of the
//! sandbox's network namespace) and joins each to a new connection to the unix socket SOCKET,
//! which codemill binds into the sandbox (the model gateway, the egress proxy). Then it runs
//! PROGRAM with the environment it was given and exits with its status, so the sandbox ends when
//! the program does. Built with std only by the crate's build script and embedded in codemill.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitCode};
use std::thread;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(split) = args.iter().position(|a| a == "--") else {
        return fail("usage: codemill-relay [--listen PORT=SOCKET]... -- PROGRAM [ARGS...]");
    };
    let (options, command) = (&args[..split], &args[split + 1..]);
    let Some((program, rest)) = command.split_first() else {
        return fail("no program to run after --");
    };
    let mut i = 0;
    while i < options.len() {
        if options[i] != "--listen" || i + 1 >= options.len() {
            return fail(&format!("unknown option {:?}", options[i]));
        }
        let Some((port, socket)) = options[i + 1].split_once('=') else {
            return fail("--listen takes PORT=SOCKET");
        };
        let Ok(port) = port.parse::<u16>() else {
            return fail(&format!("bad port {port:?}"));
        };
        let listener = match TcpListener::bind(("127.0.0.1", port)) {
            Ok(listener) => listener,
            Err(e) => return fail(&format!("cannot listen on 127.0.0.1:{port}: {e}")),
        };
        let socket = socket.to_string();
        thread::spawn(move || serve(listener, socket));
        i += 2;
    }
    match Command::new(program).args(rest).status() {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => ExitCode::from(code as u8),
            (None, Some(signal)) => ExitCode::from((128 + signal) as u8),
            (None, None) => ExitCode::from(1),
        },
        Err(e) => {
            let code = if e.kind() == io::ErrorKind::NotFound { 127 } else { 126 };
            eprintln!("codemill-relay: cannot run {program}: {e}");
            ExitCode::from(code)
        }
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("codemill-relay: {message}");
    ExitCode::from(125)
}

/// Accepts connections for the life of the sandbox; each gets two copying threads.
fn serve(listener: TcpListener, socket: String) {
    for tcp in listener.incoming().flatten() {
        let Ok(unix) = UnixStream::connect(&socket) else {
            // The other side is gone: refuse this connection, keep listening.
            let _ = tcp.shutdown(Shutdown::Both);
            continue;
        };
        let (Ok(tcp2), Ok(unix2)) = (tcp.try_clone(), unix.try_clone()) else {
            continue;
        };
        thread::spawn(move || pipe_tcp_to_unix(tcp, unix));
        thread::spawn(move || pipe_unix_to_tcp(unix2, tcp2));
    }
}

fn pipe_tcp_to_unix(mut from: TcpStream, mut to: UnixStream) {
    let _ = copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

fn pipe_unix_to_tcp(mut from: UnixStream, mut to: TcpStream) {
    let _ = copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

/// Copies until EOF or an error, flushing every chunk (streamed model answers must not wait).
fn copy(from: &mut impl Read, to: &mut impl Write) -> io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])?;
        to.flush()?;
    }
}
