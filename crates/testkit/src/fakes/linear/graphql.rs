//! A small GraphQL reader for the fake Linear: one operation with variable definitions, fields
//! with aliases, arguments and nested selections. Fragments and directives are refused, which
//! codemill does not use. Validation follows the GraphQL rules a real server applies to
//! variables (declared, used, provided, typed), so a malformed request fails here as it would at
//! Linear.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// An argument value as written: a variable or a literal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Var(String),
    Lit(Value),
    List(Vec<Arg>),
    Obj(Vec<(String, Arg)>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Field {
    pub alias: Option<String>,
    pub name: String,
    pub args: Vec<(String, Arg)>,
    pub selection: Vec<Field>,
}

impl Field {
    /// The key the answer uses (the alias, else the name).
    pub fn key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.selection.iter().any(|f| f.name == name)
    }

    pub fn child(&self, name: &str) -> Option<&Field> {
        self.selection.iter().find(|f| f.name == name)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VarDef {
    pub name: String,
    /// As written: `String!`, `[String!]`, `IssueFilter`.
    pub ty: String,
    pub default: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Operation {
    pub mutation: bool,
    pub name: Option<String>,
    pub vars: Vec<VarDef>,
    pub selection: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Punct(char),
    Spread,
    Name(String),
    Int(i64),
    Float(f64),
    Str(String),
}

fn tokenize(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' | ',' | '\u{feff}' => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '{' | '}' | '(' | ')' | ':' | '!' | '$' | '[' | ']' | '=' | '@' | '|' => {
                toks.push(Tok::Punct(c));
                i += 1;
            }
            '.' => {
                if chars.get(i + 1) == Some(&'.') && chars.get(i + 2) == Some(&'.') {
                    toks.push(Tok::Spread);
                    i += 3;
                } else {
                    return Err("Syntax Error: Unexpected \".\".".into());
                }
            }
            '"' => {
                if chars.get(i + 1) == Some(&'"') && chars.get(i + 2) == Some(&'"') {
                    return Err("fake Linear: block strings are not supported".into());
                }
                i += 1;
                let mut s = String::new();
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err("Syntax Error: Unterminated string.".into());
                    };
                    i += 1;
                    match c {
                        '"' => break,
                        '\\' => {
                            let Some(&e) = chars.get(i) else {
                                return Err("Syntax Error: Unterminated string.".into());
                            };
                            i += 1;
                            s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                'b' => '\u{8}',
                                'f' => '\u{c}',
                                'u' => {
                                    let hex: String = chars.iter().skip(i).take(4).collect();
                                    i += 4;
                                    u32::from_str_radix(&hex, 16)
                                        .ok()
                                        .and_then(char::from_u32)
                                        .ok_or("Syntax Error: Invalid Unicode escape sequence.")?
                                }
                                other => other,
                            });
                        }
                        '\n' => return Err("Syntax Error: Unterminated string.".into()),
                        c => s.push(c),
                    }
                }
                toks.push(Tok::Str(s));
            }
            c if c == '-' || c.is_ascii_digit() => {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_digit()
                        || matches!(chars[i], '.' | 'e' | 'E' | '+' | '-'))
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                if let Ok(n) = text.parse::<i64>() {
                    toks.push(Tok::Int(n));
                } else if let Ok(f) = text.parse::<f64>() {
                    toks.push(Tok::Float(f));
                } else {
                    return Err(format!("Syntax Error: Invalid number \"{text}\"."));
                }
            }
            c if c == '_' || c.is_ascii_alphabetic() => {
                let start = i;
                while i < chars.len() && (chars[i] == '_' || chars[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                toks.push(Tok::Name(chars[start..i].iter().collect()));
            }
            other => return Err(format!("Syntax Error: Unexpected character \"{other}\".")),
        }
    }
    Ok(toks)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn is(&self, c: char) -> bool {
        self.peek() == Some(&Tok::Punct(c))
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        match self.next() {
            Some(Tok::Punct(p)) if p == c => Ok(()),
            other => Err(format!("Syntax Error: Expected \"{c}\", found {other:?}.")),
        }
    }

    fn name(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Name(n)) => Ok(n),
            other => Err(format!("Syntax Error: Expected Name, found {other:?}.")),
        }
    }

    fn document(&mut self) -> Result<Operation, String> {
        let op = match self.peek() {
            Some(Tok::Punct('{')) => Operation {
                mutation: false,
                name: None,
                vars: Vec::new(),
                selection: self.selection()?,
            },
            Some(Tok::Name(kw)) if kw == "query" || kw == "mutation" => {
                let mutation = kw == "mutation";
                self.pos += 1;
                let name = match self.peek() {
                    Some(Tok::Name(_)) => Some(self.name()?),
                    _ => None,
                };
                let vars = if self.is('(') {
                    self.var_defs()?
                } else {
                    Vec::new()
                };
                if self.is('@') {
                    return Err("fake Linear: directives are not supported".into());
                }
                Operation {
                    mutation,
                    name,
                    vars,
                    selection: self.selection()?,
                }
            }
            Some(Tok::Name(kw)) if kw == "fragment" => {
                return Err("fake Linear: fragments are not supported".into());
            }
            Some(Tok::Name(kw)) if kw == "subscription" => {
                return Err("fake Linear: subscriptions are not supported".into());
            }
            other => return Err(format!("Syntax Error: Unexpected {other:?}.")),
        };
        if self.pos < self.toks.len() {
            return Err("fake Linear: send exactly one operation per request".into());
        }
        Ok(op)
    }

    fn var_defs(&mut self) -> Result<Vec<VarDef>, String> {
        self.expect('(')?;
        let mut vars = Vec::new();
        while !self.is(')') {
            self.expect('$')?;
            let name = self.name()?;
            self.expect(':')?;
            let ty = self.ty()?;
            let default = if self.is('=') {
                self.pos += 1;
                Some(lit_only(self.value()?)?)
            } else {
                None
            };
            vars.push(VarDef { name, ty, default });
        }
        self.expect(')')?;
        Ok(vars)
    }

    fn ty(&mut self) -> Result<String, String> {
        let mut ty = if self.is('[') {
            self.pos += 1;
            let inner = self.ty()?;
            self.expect(']')?;
            format!("[{inner}]")
        } else {
            self.name()?
        };
        if self.is('!') {
            self.pos += 1;
            ty.push('!');
        }
        Ok(ty)
    }

    fn selection(&mut self) -> Result<Vec<Field>, String> {
        self.expect('{')?;
        let mut fields = Vec::new();
        while !self.is('}') {
            if self.peek() == Some(&Tok::Spread) {
                return Err("fake Linear: fragments are not supported".into());
            }
            let first = self.name()?;
            let (alias, name) = if self.is(':') {
                self.pos += 1;
                (Some(first), self.name()?)
            } else {
                (None, first)
            };
            let mut args = Vec::new();
            if self.is('(') {
                self.pos += 1;
                while !self.is(')') {
                    let arg = self.name()?;
                    self.expect(':')?;
                    args.push((arg, self.value()?));
                }
                self.expect(')')?;
            }
            if self.is('@') {
                return Err("fake Linear: directives are not supported".into());
            }
            let selection = if self.is('{') {
                self.selection()?
            } else {
                Vec::new()
            };
            fields.push(Field {
                alias,
                name,
                args,
                selection,
            });
        }
        self.expect('}')?;
        if fields.is_empty() {
            return Err("Syntax Error: Expected Name, found \"}\".".into());
        }
        Ok(fields)
    }

    fn value(&mut self) -> Result<Arg, String> {
        match self.next() {
            Some(Tok::Punct('$')) => Ok(Arg::Var(self.name()?)),
            Some(Tok::Int(n)) => Ok(Arg::Lit(Value::from(n))),
            Some(Tok::Float(f)) => Ok(Arg::Lit(Value::from(f))),
            Some(Tok::Str(s)) => Ok(Arg::Lit(Value::String(s))),
            Some(Tok::Name(n)) => Ok(Arg::Lit(match n.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                // An enum value travels as its name.
                _ => Value::String(n),
            })),
            Some(Tok::Punct('[')) => {
                let mut items = Vec::new();
                while !self.is(']') {
                    items.push(self.value()?);
                }
                self.expect(']')?;
                Ok(Arg::List(items))
            }
            Some(Tok::Punct('{')) => {
                let mut fields = Vec::new();
                while !self.is('}') {
                    let k = self.name()?;
                    self.expect(':')?;
                    fields.push((k, self.value()?));
                }
                self.expect('}')?;
                Ok(Arg::Obj(fields))
            }
            other => Err(format!("Syntax Error: Unexpected {other:?}.")),
        }
    }
}

fn lit_only(arg: Arg) -> Result<Value, String> {
    match arg {
        Arg::Lit(v) => Ok(v),
        Arg::Var(_) => Err("Syntax Error: a default value cannot use a variable.".into()),
        Arg::List(items) => Ok(Value::Array(
            items.into_iter().map(lit_only).collect::<Result<_, _>>()?,
        )),
        Arg::Obj(fields) => {
            let mut map = Map::new();
            for (k, v) in fields {
                map.insert(k, lit_only(v)?);
            }
            Ok(Value::Object(map))
        }
    }
}

pub(crate) fn parse(query: &str) -> Result<Operation, String> {
    let toks = tokenize(query)?;
    Parser { toks, pos: 0 }.document()
}

fn vars_used(fields: &[Field], out: &mut BTreeSet<String>) {
    fn in_arg(arg: &Arg, out: &mut BTreeSet<String>) {
        match arg {
            Arg::Var(v) => {
                out.insert(v.clone());
            }
            Arg::Lit(_) => {}
            Arg::List(items) => items.iter().for_each(|a| in_arg(a, out)),
            Arg::Obj(fields) => fields.iter().for_each(|(_, a)| in_arg(a, out)),
        }
    }
    for f in fields {
        f.args.iter().for_each(|(_, a)| in_arg(a, out));
        vars_used(&f.selection, out);
    }
}

/// Whether a JSON value fits GraphQL type `ty` (input objects only checked to be objects; the
/// resolvers check their fields).
fn fits(ty: &str, v: &Value) -> bool {
    if let Some(inner) = ty.strip_suffix('!') {
        return !v.is_null() && fits(inner, v);
    }
    if v.is_null() {
        return true;
    }
    if let Some(inner) = ty.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return match v {
            Value::Array(items) => items.iter().all(|i| fits(inner, i)),
            // Input coercion accepts one item for a list.
            other => fits(inner, other),
        };
    }
    match ty {
        "String" | "ID" | "DateTime" | "TimelessDate" | "UUID" => v.is_string(),
        "Int" => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
        "Float" => v.is_number(),
        "Boolean" => v.is_boolean(),
        "IssueRelationType" => v
            .as_str()
            .is_some_and(|s| matches!(s, "blocks" | "duplicate" | "related" | "similar")),
        _ => v.is_object(),
    }
}

/// The checks a GraphQL server makes on variables before running anything.
pub(crate) fn validate_variables(
    op: &Operation,
    variables: &Map<String, Value>,
) -> Result<(), String> {
    let label = op.name.as_deref().unwrap_or("(anonymous)");
    let mut used = BTreeSet::new();
    vars_used(&op.selection, &mut used);
    for name in &used {
        if !op.vars.iter().any(|v| &v.name == name) {
            return Err(format!(
                "Variable \"${name}\" is not defined by operation \"{label}\"."
            ));
        }
    }
    for def in &op.vars {
        if !used.contains(&def.name) {
            return Err(format!(
                "Variable \"${}\" is never used in operation \"{label}\".",
                def.name
            ));
        }
        let value = variables.get(&def.name);
        match value {
            None | Some(Value::Null) if def.ty.ends_with('!') && def.default.is_none() => {
                return Err(format!(
                    "Variable \"${}\" of required type \"{}\" was not provided.",
                    def.name, def.ty
                ));
            }
            Some(v) if !fits(&def.ty, v) => {
                return Err(format!(
                    "Variable \"${}\" got invalid value {v}; expected type \"{}\".",
                    def.name, def.ty
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether a variable declared as `declared` may stand where `expected` is wanted.
pub(crate) fn assignable(declared: &str, expected: &str) -> bool {
    declared == expected || declared.strip_suffix('!') == Some(expected)
}

/// An argument's value with variables substituted (a missing variable reads as its default or
/// null).
pub(crate) fn resolve(arg: &Arg, op: &Operation, variables: &Map<String, Value>) -> Value {
    match arg {
        Arg::Lit(v) => v.clone(),
        Arg::Var(name) => variables
            .get(name)
            .cloned()
            .or_else(|| {
                op.vars
                    .iter()
                    .find(|d| &d.name == name)
                    .and_then(|d| d.default.clone())
            })
            .unwrap_or(Value::Null),
        Arg::List(items) => Value::Array(items.iter().map(|a| resolve(a, op, variables)).collect()),
        Arg::Obj(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, a)| (k.clone(), resolve(a, op, variables)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_an_operation_and_checks_its_variables() {
        let op = parse(
        "query Q($id: String!, $first: Int = 5) { issue(id: $id) { id a: title comments(first: $first) { nodes { id } } } }",
    )
    .unwrap();
        assert_eq!(op.name.as_deref(), Some("Q"));
        assert_eq!(op.vars.len(), 2);
        assert_eq!(op.selection[0].name, "issue");
        assert_eq!(op.selection[0].selection[1].key(), "a");
        let vars = json!({"id": "ENG-1"});
        assert!(validate_variables(&op, vars.as_object().unwrap()).is_ok());
        let vars = json!({});
        assert!(validate_variables(&op, vars.as_object().unwrap()).is_err());
        let vars = json!({"id": 7});
        assert!(validate_variables(&op, vars.as_object().unwrap()).is_err());
        assert!(parse("query { issue(id: \"x\") { ...F } }").is_err());
        let unused = parse("query Q($id: String!) { viewer { id } }").unwrap();
        assert!(validate_variables(&unused, json!({"id": "x"}).as_object().unwrap()).is_err());
    }
}
