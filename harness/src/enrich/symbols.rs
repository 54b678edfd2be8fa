//! The symbols the enrichment server knows: those of the bundled market data.

/// One known symbol and what the server says of it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Company {
    /// The ticker symbol, as decoded from the path (`^GSPC`, not `%5EGSPC`).
    pub symbol: &'static str,
    /// `company_name` in the JSON.
    pub company_name: &'static str,
    /// `sector` in the JSON.
    pub sector: &'static str,
    /// `market_cap` in the JSON, in US dollars; `None` is sent as `null`.
    pub market_cap: Option<u64>,
}

impl Company {
    /// The JSON body the server sends for it, compact, keys in this order:
    /// `{"company_name":"...","sector":"...","market_cap":N|null}`.
    pub fn json(&self) -> String {
        let cap = match self.market_cap {
            Some(n) => n.to_string(),
            None => "null".to_owned(),
        };
        // The names hold no character that JSON would need escaped.
        format!(
            r#"{{"company_name":"{}","sector":"{}","market_cap":{cap}}}"#,
            self.company_name, self.sector
        )
    }
}

/// Every symbol the server knows. Others get a 404.
pub const COMPANIES: &[Company] = &[
    Company {
        symbol: "MSFT",
        company_name: "Microsoft Corporation",
        sector: "Information Technology",
        market_cap: Some(3_100_000_000_000),
    },
    Company {
        symbol: "AMZN",
        company_name: "Amazon.com, Inc.",
        sector: "Consumer Discretionary",
        market_cap: Some(1_900_000_000_000),
    },
    Company {
        symbol: "IBM",
        company_name: "International Business Machines Corporation",
        sector: "Information Technology",
        market_cap: Some(170_000_000_000),
    },
    Company {
        symbol: "GOOG",
        company_name: "Alphabet Inc.",
        sector: "Communication Services",
        market_cap: Some(2_100_000_000_000),
    },
    Company {
        symbol: "AAPL",
        company_name: "Apple Inc.",
        sector: "Information Technology",
        market_cap: Some(3_400_000_000_000),
    },
    Company {
        symbol: "^GSPC",
        company_name: "S&P 500 Index",
        sector: "Index",
        market_cap: None,
    },
];

/// The known company of `symbol`, matched exactly (case included).
pub fn lookup(symbol: &str) -> Option<&'static Company> {
    COMPANIES.iter().find(|c| c.symbol == symbol)
}
