//! The bench harness (`lokiz bench`): filled in below.
use lokiz_infra::Config;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

pub async fn run(_config: Config, _args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
