//! What infer shows a person besides model text: colours (`--color`, `NO_COLOR`), quietness
//! (`-q`) and progress bars on stderr. Settings are set once by `main` and read everywhere;
//! nothing here writes to stdout, which carries only model text or JSON.

pub mod interrupt;
pub mod progress;

use std::io::IsTerminal;
use std::sync::OnceLock;

/// `--color`: auto colours a stream only when it is a terminal and `NO_COLOR` is unset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, Debug)]
struct Settings {
    color: ColorChoice,
    quiet: bool,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Called once by `main` with the global flags; later calls are ignored.
pub fn init(color: ColorChoice, quiet: bool) {
    let _ = SETTINGS.set(Settings { color, quiet });
}

fn settings() -> Settings {
    *SETTINGS.get_or_init(|| Settings {
        color: ColorChoice::Auto,
        quiet: false,
    })
}

/// `-q`: no progress, timings or notes on stderr (errors still go there).
pub fn quiet() -> bool {
    settings().quiet
}

fn color_for(is_terminal: bool) -> bool {
    match settings().color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

/// Whether to colour what goes to stdout / stderr.
pub fn color_stdout() -> bool {
    color_for(std::io::stdout().is_terminal())
}

pub fn color_stderr() -> bool {
    color_for(std::io::stderr().is_terminal())
}

/// A text style, as an SGR code.
#[derive(Clone, Copy, Debug)]
pub enum Style {
    Bold,
    Dim,
    Green,
    Yellow,
    Red,
}

impl Style {
    fn sgr(self) -> &'static str {
        match self {
            Style::Bold => "1",
            Style::Dim => "2",
            Style::Green => "32",
            Style::Yellow => "33",
            Style::Red => "31",
        }
    }
}

/// `text` in `style` when `on`, else as is.
pub fn paint(on: bool, style: Style, text: &str) -> String {
    if on {
        format!("\x1b[{}m{text}\x1b[0m", style.sgr())
    } else {
        text.to_string()
    }
}

/// A note on stderr (dim when colour is on), unless `-q`.
pub fn note(text: &str) {
    if !quiet() {
        eprintln!("{}", paint(color_stderr(), Style::Dim, text));
    }
}

/// A warning on stderr; shown even with `-q`, since it says something went differently.
pub fn warn(text: &str) {
    eprintln!(
        "{} {text}",
        paint(color_stderr(), Style::Yellow, "warning:")
    );
}
