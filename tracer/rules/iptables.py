"""Parse `iptables-save` output (nf_tables and legacy backends) into frozen dataclasses.

Also reads kube-proxy's own restore payload and `iptables -S` listings: tables, chains with their
policies, and every rule as its matches (`-m module --opt args`, negations kept) and target. Lines
that cannot be read are kept as `UnknownLine`s with a warning, never dropped. Pure: text in, data
out; it executes nothing.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from tracer.errors import InputError

BUILTIN_CHAINS = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})

# Options of the basic (module-less) match; each takes one argument.
_BASIC = {
    "-s": "-s",
    "--source": "-s",
    "--src": "-s",
    "-d": "-d",
    "--destination": "-d",
    "--dst": "-d",
    "-p": "-p",
    "--protocol": "-p",
    "-i": "-i",
    "--in-interface": "-i",
    "-o": "-o",
    "--out-interface": "-o",
}
# Options that always take exactly one argument, whatever it looks like.
_ONE_ARG = frozenset({"--comment", "--name", "--nfacct-name", "--log-prefix"})


@dataclass(frozen=True)
class Option:
    """One `--name args…` of a match or target; `negated` when a `!` preceded it."""

    name: str
    args: tuple[str, ...] = ()
    negated: bool = False

    @property
    def arg(self) -> str:
        return self.args[0] if self.args else ""


@dataclass(frozen=True)
class Match:
    """One match: `module` is "" for -s/-d/-p/-i/-o/-f, else the `-m` module name."""

    module: str
    options: tuple[Option, ...]

    def get(self, name: str) -> Option | None:
        for o in self.options:
            if o.name == name:
                return o
        return None


@dataclass(frozen=True)
class Rule:
    """One `-A CHAIN …` rule; `text` is the line as it reads in the dump."""

    table: str
    chain: str
    text: str
    line: int
    matches: tuple[Match, ...]
    target: str | None
    goto: bool = False
    target_options: tuple[Option, ...] = ()

    @property
    def comment(self) -> str | None:
        for m in self.matches:
            if m.module == "comment":
                o = m.get("--comment")
                if o is not None:
                    return o.arg
        return None

    def target_option(self, name: str) -> Option | None:
        for o in self.target_options:
            if o.name == name:
                return o
        return None

    def match_options(self, module: str) -> list[Option]:
        return [o for m in self.matches if m.module == module for o in m.options]


@dataclass(frozen=True)
class Chain:
    name: str
    policy: str | None  # ACCEPT/DROP for built-in chains, None for user chains
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Table:
    name: str
    chains: dict[str, Chain]


@dataclass(frozen=True)
class UnknownLine:
    line: int
    text: str
    reason: str


@dataclass(frozen=True)
class IptablesRuleset:
    """Every table of one dump. `backend` is "nf_tables", "legacy" or None (not stated)."""

    tables: dict[str, Table]
    backend: str | None
    unknown: tuple[UnknownLine, ...] = ()
    warnings: tuple[str, ...] = ()

    def chain(self, table: str, name: str) -> Chain | None:
        t = self.tables.get(table)
        return None if t is None else t.chains.get(name)


class _RuleSyntaxError(ValueError):
    pass


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=False, posix=True)
    except ValueError as e:  # unbalanced quotes
        raise _RuleSyntaxError(f"cannot split into words ({e})") from e


def parse_rule_args(table: str, chain: str, words: list[str], text: str, line: int) -> Rule:
    """Turn the words after `-A CHAIN` into matches and a target."""
    matches: list[Match] = []
    basic: list[Option] = []
    module: str | None = None
    opts: list[Option] = []
    target: str | None = None
    goto = False
    target_opts: list[Option] = []
    negate = False
    in_target = False
    i = 0
    n = len(words)

    def close_module() -> None:
        nonlocal module, opts
        if module is not None:
            matches.append(Match(module, tuple(opts)))
        module, opts = None, []

    while i < n:
        w = words[i]
        if w == "!":
            negate = True
            i += 1
            continue
        if w in ("-m", "--match"):
            if i + 1 >= n:
                raise _RuleSyntaxError("-m without a module name")
            close_module()
            module = words[i + 1]
            i += 2
            continue
        if w in ("-j", "--jump", "-g", "--goto"):
            if i + 1 >= n:
                raise _RuleSyntaxError(f"{w} without a target")
            close_module()
            if target is not None:
                raise _RuleSyntaxError("two targets")
            target = words[i + 1]
            goto = w in ("-g", "--goto")
            in_target = True
            i += 2
            continue
        if w == "-c" or w == "--set-counters":  # iptables-save -c
            i += 3
            continue
        if w in _BASIC and not in_target:
            if i + 1 >= n:
                raise _RuleSyntaxError(f"{w} without an argument")
            arg = words[i + 1]
            # iptables-save v1.4 style `-s ! 1.2.3.4` is not produced by v1.8; accept `! -s`.
            basic.append(Option(_BASIC[w], (arg,), negate))
            negate = False
            i += 2
            continue
        if w in ("-f", "--fragment") and not in_target:
            basic.append(Option("-f", (), negate))
            negate = False
            i += 1
            continue
        if w.startswith("-") and len(w) > 1 and not _is_number(w):
            args: list[str] = []
            j = i + 1
            if w in _ONE_ARG and j < n:
                # A comment or a name may itself start with '-': take it whole.
                args.append(words[j])
                j += 1
            while (
                w not in _ONE_ARG
                and j < n
                and words[j] != "!"
                and not (words[j].startswith("-") and not _is_number(words[j]))
            ):
                args.append(words[j])
                j += 1
            opt = Option(w, tuple(args), negate)
            negate = False
            if in_target:
                target_opts.append(opt)
            elif module is None:
                # `--dport` without `-m tcp` is legal after `-p tcp` (implicit module).
                basic.append(opt)
            else:
                opts.append(opt)
            i = j
            continue
        raise _RuleSyntaxError(f"unexpected word {w!r}")
    close_module()
    if negate:
        raise _RuleSyntaxError("'!' at the end of the rule")
    all_matches = ([Match("", tuple(basic))] if basic else []) + matches
    return Rule(
        table=table,
        chain=chain,
        text=text,
        line=line,
        matches=tuple(all_matches),
        target=target,
        goto=goto,
        target_options=tuple(target_opts),
    )


def _is_number(w: str) -> bool:
    try:
        float(w)
    except ValueError:
        return False
    return True


def parse_iptables_save(text: str, *, source: str = "<rules>") -> IptablesRuleset:
    """Parse `iptables-save` (or a restore payload, or `iptables -S`) text.

    Raises InputError only when nothing at all could be read; otherwise partial dumps give what
    they hold, with warnings.
    """
    backend: str | None = None
    tables: dict[str, dict[str, list[Rule]]] = {}
    policies: dict[str, dict[str, str | None]] = {}
    unknown: list[UnknownLine] = []
    warnings: list[str] = []
    table: str | None = None
    committed = True
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if "iptables-save" in line or "iptables-nft-save" in line:
                # iptables-nft says "(nf_tables)"; legacy says "(legacy)" or nothing at all.
                backend = "nf_tables" if "nf_tables" in line else "legacy"
            continue
        if line.startswith("*"):
            table = line[1:].strip()
            if not table or " " in table:
                unknown.append(UnknownLine(lineno, raw, "bad table header"))
                table = None
                continue
            tables.setdefault(table, {})
            policies.setdefault(table, {})
            committed = False
            continue
        if line == "COMMIT":
            committed = True
            continue
        if line.startswith(":"):
            parts = line[1:].split()
            if not parts or table is None:
                unknown.append(UnknownLine(lineno, raw, "chain line outside a table"))
                continue
            name = parts[0]
            pol = parts[1] if len(parts) > 1 and parts[1] != "-" else None
            tables[table].setdefault(name, [])
            policies[table][name] = pol
            continue
        try:
            words = _split(line)
        except _RuleSyntaxError as e:
            unknown.append(UnknownLine(lineno, raw, str(e)))
            continue
        if not words:
            continue
        cmd = words[0]
        if cmd in ("-N", "--new-chain", "-P", "--policy") and len(words) >= 2:
            t = table or _guess_table(words[1])
            tables.setdefault(t, {}).setdefault(words[1], [])
            policies.setdefault(t, {})
            if cmd in ("-P", "--policy") and len(words) >= 3:
                policies[t][words[1]] = words[2]
            else:
                policies[t].setdefault(words[1], None)
            continue
        if cmd in ("-A", "--append", "-I", "--insert") and len(words) >= 2:
            chain = words[1]
            rest = words[2:]
            if cmd in ("-I", "--insert") and rest and rest[0].isdigit():
                rest = rest[1:]
            t = table or _guess_table(chain)
            try:
                rule = parse_rule_args(t, chain, rest, raw.strip(), lineno)
            except _RuleSyntaxError as e:
                unknown.append(UnknownLine(lineno, raw, str(e)))
                continue
            chains = tables.setdefault(t, {})
            policies.setdefault(t, {})
            if chain not in chains:
                # iptables-save always declares a chain before its rules; a paste may not.
                policies[t].setdefault(chain, "ACCEPT" if chain in BUILTIN_CHAINS else None)
            rules = chains.setdefault(chain, [])
            if cmd in ("-I", "--insert"):
                rules.insert(0, rule)
            else:
                rules.append(rule)
            continue
        unknown.append(UnknownLine(lineno, raw, "not an iptables-save line"))
    if table is not None and not committed:
        warnings.append(f"{source}: table {table} has no COMMIT (truncated dump?)")
    for u in unknown:
        warnings.append(f"{source}:{u.line}: ignored ({u.reason}): {u.text.strip()[:120]}")
    if not tables:
        raise InputError(f"{source}: no iptables table or rule could be read")
    if not any(table_rules for t in tables.values() for table_rules in t.values()):
        warnings.append(f"{source}: the dump holds chains but no rules")
    built = {
        name: Table(
            name,
            {
                c: Chain(c, policies.get(name, {}).get(c), tuple(rules))
                for c, rules in chains.items()
            },
        )
        for name, chains in tables.items()
    }
    return IptablesRuleset(built, backend, tuple(unknown), tuple(warnings))


def _guess_table(chain: str) -> str:
    """The table of a rule listed without a `*table` header (an `iptables -t nat -S` paste)."""
    if chain.startswith(("KUBE-SVC-", "KUBE-SEP-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-")):
        return "nat"
    if chain in ("PREROUTING", "POSTROUTING", "KUBE-MARK-MASQ", "KUBE-POSTROUTING"):
        return "nat"
    return "filter"


def canonical_rule(rule: Rule) -> tuple[str, ...]:
    """A rule in a form where kube-proxy's payload and iptables-save's rendering compare equal.

    Drops what iptables-save adds (`/32`, `-m tcp` for `-p tcp`, the default `--reject-with`,
    `--mask 255.255.255.255 --rsource` of `recent`), turns `--or-mark`/`--xor-mark` into
    `--set-xmark`, rounds probabilities and sorts the matches (their order does not matter).
    """
    parts: list[str] = []
    proto = ""
    for m in rule.matches:
        for o in m.options:
            if m.module == "" and o.name == "-p":
                proto = o.arg
    for m in rule.matches:
        if (
            m.module
            and m.module == proto
            and all(o.name in ("--dport", "--sport") for o in m.options)
        ):
            mod = ""
        else:
            mod = m.module
        for o in m.options:
            args = list(o.args)
            if o.name in ("-s", "-d"):
                args = [a[:-3] if a.endswith("/32") else a for a in args]
            if o.name == "--probability":
                args = [f"{float(a):.9f}" if _is_number(a) else a for a in args]
            if m.module == "recent" and o.name in ("--mask", "--rsource"):
                continue
            parts.append(f"{mod} {'! ' if o.negated else ''}{o.name} {' '.join(args)}".strip())
    parts.sort()
    tgt = [rule.target or "", "goto" if rule.goto else ""]
    for o in rule.target_options:
        name, args = o.name, list(o.args)
        if name == "--or-mark":
            name, args = "--set-xmark", [f"{args[0]}/{args[0]}"]
        elif name == "--xor-mark":
            name, args = "--set-xmark", [f"{args[0]}/0x0"]
        elif name == "--reject-with" and args == ["icmp-port-unreachable"]:
            continue
        tgt.append(f"{name} {' '.join(args)}")
    return (rule.chain, *parts, "->", *tgt)
