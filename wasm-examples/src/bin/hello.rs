//! Reads stdin, prints it reversed by characters: `Hello, World` -> `dlroW ,olleH`.
use std::io::{Read, Write};

fn main() {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("hello: stdin is not UTF-8 text: {e}");
        std::process::exit(2);
    }
    let reversed: String = input.chars().rev().collect();
    std::io::stdout().write_all(reversed.as_bytes()).expect("stdout");
}
