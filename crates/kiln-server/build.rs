//! Rebuilds the crate when the console's built assets change: they are compiled in
//! (`console.rs`), and a derive macro cannot tell Cargo which files it read.

fn main() {
    let dist = std::path::Path::new("../../console/dist");
    if dist.is_dir() {
        println!("cargo:rerun-if-changed=../../console/dist");
    } else {
        // Not built yet: the console directory changes when `npm run build` makes dist.
        println!("cargo:rerun-if-changed=../../console");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
