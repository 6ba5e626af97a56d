//! The three providers: where their `siteverify` lives and what their tokens are worth.

/// A CAPTCHA provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Google reCAPTCHA v2 (checkbox/invisible) and v3 (score).
    Recaptcha,
    /// hCaptcha (score with Enterprise).
    Hcaptcha,
    /// Cloudflare Turnstile.
    Turnstile,
}

impl Provider {
    /// Parses the `provider` setting.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "recaptcha" | "recaptcha-v2" | "recaptcha-v3" => Some(Self::Recaptcha),
            "hcaptcha" => Some(Self::Hcaptcha),
            "turnstile" => Some(Self::Turnstile),
            _ => None,
        }
    }

    /// The provider's name in the settings.
    pub fn name(self) -> &'static str {
        match self {
            Self::Recaptcha => "recaptcha",
            Self::Hcaptcha => "hcaptcha",
            Self::Turnstile => "turnstile",
        }
    }

    /// The public endpoint's base URL (the `base-url` setting overrides it).
    pub fn default_base_url(self) -> &'static str {
        match self {
            Self::Recaptcha => "https://www.google.com",
            Self::Hcaptcha => "https://api.hcaptcha.com",
            Self::Turnstile => "https://challenges.cloudflare.com",
        }
    }

    /// The `siteverify` path below the base URL.
    pub fn siteverify_path(self) -> &'static str {
        match self {
            Self::Recaptcha => "/recaptcha/api/siteverify",
            Self::Hcaptcha => "/siteverify",
            Self::Turnstile => "/turnstile/v0/siteverify",
        }
    }

    /// How long a token stays valid after its challenge, in seconds (reCAPTCHA: 2 minutes;
    /// hCaptcha and Turnstile: 5 minutes).
    pub fn token_validity_secs(self) -> u64 {
        match self {
            Self::Recaptcha => 120,
            Self::Hcaptcha | Self::Turnstile => 300,
        }
    }
}
