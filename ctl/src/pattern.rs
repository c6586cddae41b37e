//! The regular expressions of `watch --exclude/--include` (inotifywait's options): a small
//! POSIX extended-regex subset, matched against an event's whole path (`%w%f`) as inotifywait
//! matches it, so the patterns scripts pass to inotifywait work unchanged.
//!
//! Supported: literals, `.`, bracket expressions (`[a-z]`, `[^/]`, `[[:digit:]]`), `^`, `$`,
//! `*`, `+`, `?`, `{m}`, `{m,}`, `{m,n}`, `|`, `( )`, `\` before a special character, and GNU's
//! `\w \W \s \S`. Not supported (refused with a message): back-references, collating elements.
//! Matching is a Thompson simulation over bytes: time linear in the path, no backtracking.

use std::fmt;

/// A compiled pattern.
#[derive(Clone, Debug)]
pub struct Pattern {
    program: Vec<Inst>,
    case_insensitive: bool,
}

/// Why a pattern was refused, with the byte offset where that was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError {
    pub offset: usize,
    pub message: &'static str,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.message, self.offset)
    }
}

impl std::error::Error for PatternError {}

/// Bounds on what one pattern may cost: repeats are expanded at compile time.
const MAX_REPEAT: u32 = 255;
const MAX_PROGRAM: usize = 20_000;
const MAX_DEPTH: usize = 100;

#[derive(Clone, Debug)]
enum Node {
    Empty,
    Byte(u8),
    Any,
    Class(Box<Class>),
    Bol,
    Eol,
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat { node: Box<Node>, min: u32, max: Option<u32> },
}

/// A set of bytes, as 256 bits.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Class([u64; 4]);

impl Class {
    fn new() -> Class {
        Class([0; 4])
    }
    fn add(&mut self, b: u8) {
        self.0[usize::from(b / 64)] |= 1 << (b % 64);
    }
    fn add_range(&mut self, lo: u8, hi: u8) {
        for b in lo..=hi {
            self.add(b);
        }
    }
    fn add_where(&mut self, pred: impl Fn(u8) -> bool) {
        for b in 0..=255u8 {
            if pred(b) {
                self.add(b);
            }
        }
    }
    fn negate(&mut self) {
        for word in &mut self.0 {
            *word = !*word;
        }
    }
    fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b / 64)] & (1 << (b % 64)) != 0
    }
    /// Adds the other case of every ASCII letter in the set.
    fn fold_case(&mut self) {
        for b in b'a'..=b'z' {
            let upper = b.to_ascii_uppercase();
            if self.contains(b) || self.contains(upper) {
                self.add(b);
                self.add(upper);
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Inst {
    Byte(u8),
    Any,
    Class(Box<Class>),
    Bol,
    Eol,
    Split(usize, usize),
    Jmp(usize),
    Match,
}

struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, message: &'static str) -> PatternError {
        PatternError { offset: self.pos, message }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn alternation(&mut self) -> Result<Node, PatternError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("groups nested too deeply"));
        }
        let mut branches = vec![self.concat()?];
        while self.peek() == Some(b'|') {
            self.pos += 1;
            branches.push(self.concat()?);
        }
        self.depth -= 1;
        Ok(if branches.len() == 1 { branches.remove(0) } else { Node::Alt(branches) })
    }

    fn concat(&mut self) -> Result<Node, PatternError> {
        let mut items = Vec::new();
        while let Some(b) = self.peek() {
            if b == b'|' || b == b')' {
                break;
            }
            let atom = self.atom()?;
            items.push(self.repeats(atom)?);
        }
        Ok(match items.len() {
            0 => Node::Empty,
            1 => items.remove(0),
            _ => Node::Concat(items),
        })
    }

    fn atom(&mut self) -> Result<Node, PatternError> {
        let Some(b) = self.peek() else { return Err(self.error("pattern ends early")) };
        self.pos += 1;
        Ok(match b {
            b'(' => {
                let inner = self.alternation()?;
                if self.peek() != Some(b')') {
                    return Err(self.error("'(' without ')'"));
                }
                self.pos += 1;
                inner
            }
            b'[' => Node::Class(Box::new(self.bracket()?)),
            b'.' => Node::Any,
            b'^' => Node::Bol,
            b'$' => Node::Eol,
            b'*' | b'+' | b'?' => {
                self.pos -= 1;
                return Err(self.error("repetition of nothing"));
            }
            b'{' if self.peek().is_some_and(|c| c.is_ascii_digit()) => {
                self.pos -= 1;
                return Err(self.error("repetition of nothing"));
            }
            b'\\' => {
                let Some(c) = self.peek() else {
                    return Err(self.error("'\\' at the end of the pattern"));
                };
                self.pos += 1;
                let mut class = Class::new();
                match c {
                    b'w' | b'W' => class.add_where(|b| b.is_ascii_alphanumeric() || b == b'_'),
                    b's' | b'S' => class.add_where(|b| b.is_ascii_whitespace() || b == 0x0b),
                    b'1'..=b'9' => {
                        self.pos -= 1;
                        return Err(self.error("back-references are not supported"));
                    }
                    _ => return Ok(Node::Byte(c)),
                }
                if c.is_ascii_uppercase() {
                    class.negate();
                }
                Node::Class(Box::new(class))
            }
            _ => Node::Byte(b),
        })
    }

    fn repeats(&mut self, mut node: Node) -> Result<Node, PatternError> {
        loop {
            let (min, max) = match self.peek() {
                Some(b'*') => (0, None),
                Some(b'+') => (1, None),
                Some(b'?') => (0, Some(1)),
                Some(b'{') if self.text.get(self.pos + 1).is_some_and(|c| c.is_ascii_digit()) => {
                    self.pos += 1;
                    let min = self.number()?;
                    let max = if self.peek() == Some(b',') {
                        self.pos += 1;
                        if self.peek() == Some(b'}') {
                            None
                        } else {
                            Some(self.number()?)
                        }
                    } else {
                        Some(min)
                    };
                    if self.peek() != Some(b'}') {
                        return Err(self.error("'{' without '}'"));
                    }
                    if max.is_some_and(|max| max < min) {
                        return Err(self.error("repetition {m,n} with n < m"));
                    }
                    (min, max)
                }
                _ => return Ok(node),
            };
            self.pos += 1;
            node = Node::Repeat { node: Box::new(node), min, max };
        }
    }

    fn number(&mut self) -> Result<u32, PatternError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        std::str::from_utf8(&self.text[start..self.pos])
            .ok()
            .and_then(|digits| digits.parse::<u32>().ok())
            .filter(|&n| n <= MAX_REPEAT)
            .ok_or(PatternError { offset: start, message: "repetition count over 255" })
    }

    /// After `[`: the bracket expression up to its `]`.
    fn bracket(&mut self) -> Result<Class, PatternError> {
        let mut class = Class::new();
        let negate = self.peek() == Some(b'^');
        if negate {
            self.pos += 1;
        }
        let mut first = true;
        loop {
            let Some(b) = self.peek() else { return Err(self.error("'[' without ']'")) };
            if b == b']' && !first {
                self.pos += 1;
                break;
            }
            first = false;
            if b == b'[' && self.text.get(self.pos + 1) == Some(&b':') {
                self.pos += 2;
                let start = self.pos;
                while self.peek().is_some_and(|c| c != b':') {
                    self.pos += 1;
                }
                let name = &self.text[start..self.pos];
                if self.text.get(self.pos..self.pos + 2) != Some(b":]") {
                    return Err(self.error("'[:' without ':]'"));
                }
                self.pos += 2;
                let pred: fn(&u8) -> bool = match name {
                    b"alpha" => u8::is_ascii_alphabetic,
                    b"digit" => u8::is_ascii_digit,
                    b"alnum" => u8::is_ascii_alphanumeric,
                    b"upper" => u8::is_ascii_uppercase,
                    b"lower" => u8::is_ascii_lowercase,
                    b"space" => |b: &u8| b.is_ascii_whitespace() || *b == 0x0b,
                    b"blank" => |b: &u8| *b == b' ' || *b == b'\t',
                    b"punct" => u8::is_ascii_punctuation,
                    b"print" => |b: &u8| b.is_ascii_graphic() || *b == b' ',
                    b"graph" => u8::is_ascii_graphic,
                    b"cntrl" => u8::is_ascii_control,
                    b"xdigit" => u8::is_ascii_hexdigit,
                    _ => {
                        self.pos = start;
                        return Err(self.error("unknown character class"));
                    }
                };
                class.add_where(|b| pred(&b));
                continue;
            }
            if b == b'[' && matches!(self.text.get(self.pos + 1), Some(b'.' | b'=')) {
                return Err(self.error("collating elements are not supported"));
            }
            self.pos += 1;
            let is_range = self.peek() == Some(b'-')
                && self.text.get(self.pos + 1).is_some_and(|&c| c != b']');
            if is_range {
                let hi = self.text[self.pos + 1];
                if hi < b {
                    return Err(self.error("range out of order"));
                }
                self.pos += 2;
                class.add_range(b, hi);
            } else {
                class.add(b);
            }
        }
        if negate {
            class.negate();
        }
        Ok(class)
    }
}

struct Compiler {
    program: Vec<Inst>,
    case_insensitive: bool,
}

impl Compiler {
    fn push(&mut self, inst: Inst) -> Result<usize, PatternError> {
        if self.program.len() >= MAX_PROGRAM {
            return Err(PatternError { offset: 0, message: "pattern too large once expanded" });
        }
        self.program.push(inst);
        Ok(self.program.len() - 1)
    }

    fn node(&mut self, node: &Node) -> Result<(), PatternError> {
        match node {
            Node::Empty => {}
            Node::Byte(b) if self.case_insensitive && b.is_ascii_alphabetic() => {
                let mut class = Class::new();
                class.add(*b);
                class.fold_case();
                self.push(Inst::Class(Box::new(class)))?;
            }
            Node::Byte(b) => {
                self.push(Inst::Byte(*b))?;
            }
            Node::Any => {
                self.push(Inst::Any)?;
            }
            Node::Class(class) => {
                let mut class = class.clone();
                if self.case_insensitive {
                    class.fold_case();
                }
                self.push(Inst::Class(class))?;
            }
            Node::Bol => {
                self.push(Inst::Bol)?;
            }
            Node::Eol => {
                self.push(Inst::Eol)?;
            }
            Node::Concat(items) => {
                for item in items {
                    self.node(item)?;
                }
            }
            Node::Alt(branches) => {
                let mut jumps = Vec::new();
                for (i, branch) in branches.iter().enumerate() {
                    if i + 1 < branches.len() {
                        let split = self.push(Inst::Split(0, 0))?;
                        self.node(branch)?;
                        jumps.push(self.push(Inst::Jmp(0))?);
                        let next = self.program.len();
                        self.program[split] = Inst::Split(split + 1, next);
                    } else {
                        self.node(branch)?;
                    }
                }
                let end = self.program.len();
                for jump in jumps {
                    self.program[jump] = Inst::Jmp(end);
                }
            }
            Node::Repeat { node, min, max } => {
                for _ in 0..*min {
                    self.node(node)?;
                }
                match max {
                    None => {
                        // L: split body, end; body; jmp L
                        let split = self.push(Inst::Split(0, 0))?;
                        self.node(node)?;
                        self.push(Inst::Jmp(split))?;
                        let end = self.program.len();
                        self.program[split] = Inst::Split(split + 1, end);
                    }
                    Some(max) => {
                        let mut splits = Vec::new();
                        for _ in *min..*max {
                            splits.push(self.push(Inst::Split(0, 0))?);
                            self.node(node)?;
                        }
                        let end = self.program.len();
                        for split in splits {
                            self.program[split] = Inst::Split(split + 1, end);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl Pattern {
    /// Compiles `text`; `case_insensitive` for `--excludei`/`--includei`.
    pub fn new(text: &str, case_insensitive: bool) -> Result<Pattern, PatternError> {
        let mut parser = Parser { text: text.as_bytes(), pos: 0, depth: 0 };
        let node = parser.alternation()?;
        if parser.pos < parser.text.len() {
            return Err(parser.error("')' without '('"));
        }
        let mut compiler = Compiler { program: Vec::new(), case_insensitive };
        compiler.node(&node)?;
        compiler.push(Inst::Match)?;
        Ok(Pattern { program: compiler.program, case_insensitive })
    }

    /// Whether the pattern matches anywhere in `haystack` (unanchored, like `regexec`).
    pub fn is_match(&self, haystack: &[u8]) -> bool {
        let n = self.program.len();
        let mut current = Threads::new(n);
        let mut next = Threads::new(n);
        for pos in 0..=haystack.len() {
            // An unanchored search starts a thread at every position.
            if self.add(&mut current, 0, pos, haystack) {
                return true;
            }
            let Some(&byte) = haystack.get(pos) else { break };
            next.clear();
            for i in 0..current.list.len() {
                let pc = current.list[i];
                let advances = match &self.program[pc] {
                    Inst::Byte(b) => *b == byte,
                    Inst::Any => true,
                    Inst::Class(class) => class.contains(byte),
                    _ => false,
                };
                if advances && self.add(&mut next, pc + 1, pos + 1, haystack) {
                    return true;
                }
            }
            std::mem::swap(&mut current, &mut next);
        }
        false
    }

    /// Adds `pc` and what it reaches without consuming a byte; true once `Match` is reached.
    fn add(&self, threads: &mut Threads, pc: usize, pos: usize, haystack: &[u8]) -> bool {
        let mut stack = vec![pc];
        while let Some(pc) = stack.pop() {
            if !threads.insert(pc) {
                continue;
            }
            match self.program[pc] {
                Inst::Match => return true,
                Inst::Jmp(to) => stack.push(to),
                Inst::Split(a, b) => {
                    stack.push(b);
                    stack.push(a);
                }
                Inst::Bol if pos == 0 => stack.push(pc + 1),
                Inst::Eol if pos == haystack.len() => stack.push(pc + 1),
                _ => {}
            }
        }
        false
    }

    pub fn is_case_insensitive(&self) -> bool {
        self.case_insensitive
    }
}

/// A sparse set of program counters: the threads alive at one position.
struct Threads {
    list: Vec<usize>,
    seen: Vec<bool>,
}

impl Threads {
    fn new(n: usize) -> Threads {
        Threads { list: Vec::with_capacity(n), seen: vec![false; n] }
    }
    fn insert(&mut self, pc: usize) -> bool {
        if self.seen[pc] {
            return false;
        }
        self.seen[pc] = true;
        self.list.push(pc);
        true
    }
    fn clear(&mut self) {
        for &pc in &self.list {
            self.seen[pc] = false;
        }
        self.list.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        Pattern::new(pattern, false).expect("valid pattern").is_match(text.as_bytes())
    }

    #[test]
    fn the_patterns_scripts_give_inotifywait_match_as_posix_says() {
        assert!(matches(r"\.swp$", "/data/.a.swp"));
        assert!(!matches(r"\.swp$", "/data/a.swpx"));
        assert!(!matches(r"\.swp$", "/data/aXswp"));
        assert!(matches("(\\.git|node_modules)/", "/src/node_modules/x"));
        assert!(matches("(\\.git|node_modules)/", "/src/.git/HEAD"));
        assert!(!matches("(\\.git|node_modules)/", "/src/git/HEAD"));
        assert!(matches("^/mnt/[^/]+/tv", "/mnt/nas/tv/x"));
        assert!(!matches("^/mnt/[^/]+/tv", "/mnt/nas/media/tv"));
        assert!(matches(".*\\.(mkv|mp4)$", "/a/b.mp4"));
        assert!(matches("[[:digit:]]{4}", "show 2024"));
        assert!(!matches("[[:digit:]]{4}", "show 202"));
        assert!(matches("^a{2,3}$", "aaa") && !matches("^a{2,3}$", "aaaa"));
        assert!(matches("^a{2,}$", "aaaaa") && !matches("^a{2,}$", "a"));
        assert!(matches("x?y+z*", "yy"));
        assert!(matches("", "anything"));
        assert!(matches("[]a]", "]") && matches("[a-]", "-"));
        assert!(matches(r"\w+\s\W", "ab ."));
        assert!(matches("a|^b", "xa") && matches("a|^b", "bx") && !matches("a|^b", "xb"));
    }

    #[test]
    fn case_insensitive_patterns_fold_ascii_letters() {
        let p = Pattern::new("\\.MKV$|[a-c]x", true).expect("valid");
        assert!(p.is_match(b"film.mkv") && p.is_match(b"Bx") && !p.is_match(b"dx"));
    }

    #[test]
    fn broken_patterns_say_what_and_where() {
        for (pattern, message) in [
            ("(a", "'(' without ')'"),
            ("a)", "')' without '('"),
            ("[a", "'[' without ']'"),
            ("*a", "repetition of nothing"),
            ("a{3,1}", "repetition {m,n} with n < m"),
            ("a{300}", "repetition count over 255"),
            ("a{2", "'{' without '}'"),
            ("\\", "'\\' at the end of the pattern"),
            ("(a)\\1", "back-references are not supported"),
            ("[[:nope:]]", "unknown character class"),
            ("[z-a]", "range out of order"),
            ("(((((((((((x{255}){255}){255})))))))))", "pattern too large once expanded"),
        ] {
            let error = Pattern::new(pattern, false).expect_err(pattern);
            assert_eq!(error.message, message, "{pattern}");
        }
    }

    #[test]
    fn matching_is_linear_where_backtracking_explodes() {
        let p = Pattern::new("(a*)*b", false).expect("valid");
        assert!(!p.is_match(&[b'a'; 10_000]));
    }
}
