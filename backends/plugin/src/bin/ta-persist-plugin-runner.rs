//! `ta-persist-plugin-runner`: one plugin library in a process of its own,
//! started by the plugin host when `plugin.isolation = "process"`.

fn main() -> std::process::ExitCode {
    persistence_plugin::runner::run()
}
