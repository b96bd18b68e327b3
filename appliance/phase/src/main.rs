//! `phase`: the whole userland of a Phase appliance. Only wiring lives here.

fn main() {
    std::process::exit(phase::cli::main());
}
