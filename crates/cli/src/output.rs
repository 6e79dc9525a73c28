//! Writing to the terminal: the one place the binary prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub fn out(text: &str) {
    println!("{text}");
}

pub fn err(text: &str) {
    eprintln!("{text}");
}

pub fn error(text: &str) {
    eprintln!("error: {text}");
}

pub fn json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot render JSON: {e}"),
    }
}
