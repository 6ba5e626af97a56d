//! Turns `data/common-passwords.txt` into a sorted static array, so that looking a password up
//! is a binary search over read-only data: nothing is built when an instance starts, which
//! matters because the host runs every decision in a fresh instance.

use std::{env, fs, path::PathBuf};

fn main() {
    let source = "data/common-passwords.txt";
    println!("cargo:rerun-if-changed={source}");
    let text = fs::read_to_string(source).expect("read data/common-passwords.txt");
    let mut words: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    words.sort_unstable();
    words.dedup();
    let mut code =
        String::from("/// Common passwords, lower-cased and sorted for binary search.\n");
    code.push_str(&format!(
        "pub static COMMON_PASSWORDS: [&str; {}] = [\n",
        words.len()
    ));
    for word in words {
        code.push_str(&format!("    {word:?},\n"));
    }
    code.push_str("];\n");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    fs::write(out.join("common_passwords.rs"), code).expect("write common_passwords.rs");
}
