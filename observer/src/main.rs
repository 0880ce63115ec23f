use clap::Parser;
use observer::cli::{Cli, Command};

fn main() {
    observer::memory::tune();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("observer: start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            None => observer::daemon::run(cli.watch).await,
            Some(Command::Floor { duration, classic }) => {
                observer::daemon::floor(duration, classic).await
            }
            Some(Command::Demo(args)) => observer::demo::run(args, cli.watch).await,
            Some(Command::Cluster(args)) => observer::cluster::run(args).await,
        }
    });
    if let Err(e) = result {
        eprintln!("observer: {e:#}");
        std::process::exit(1);
    }
}
