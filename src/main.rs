fn main() {
    println!("idis-harness {}", env!("CARGO_PKG_VERSION"));
}
