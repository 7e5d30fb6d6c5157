"""One table of the range grammar, read by the engine's parser and by the plugin's: they must agree."""

LAST = 9.0  # what 'last' stands for in the table

GOOD = [  # text, values (a range without a step steps by 1)
    ("0.5", [0.5]),
    ("0 0.5 1", [0.0, 0.5, 1.0]),
    ("0,1", [0.0, 1.0]),
    ("0-1:0.25", [0.0, 0.25, 0.5, 0.75, 1.0]),
    ("1-80:2", [float(v) for v in range(1, 80, 2)]),
    ("1-98:0.5", [1.0 + 0.5 * k for k in range(195)]),
    ("2-last", [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]),
    ("1-10:4", [1.0, 5.0, 9.0]),
    ("-0.5-1:0.5", [-0.5, 0.0, 0.5, 1.0]),
    ("-1 0-2:1", [-1.0, 0.0, 1.0, 2.0]),
    ("1e-3", [0.001]),
    ("3-3", [3.0]),
]

BAD = [  # text, what both parsers say (a regular expression)
    ("0:1:5", r"former .*write (t=)?0-1:0\.25"),
    ("1:9:3", r"former .*write (t=)?1-9:4"),
    ("abc", "cannot read t 'abc'"),
    ("nan", "finite number"),
    ("inf", "finite number"),
    ("1e308", "finite number"),
    ("2-1:1", "is empty"),
    ("0-1:0", "is empty"),
    ("0-1:0.0001", "too many t values: at most 256"),
    ("last", "cannot use 'last' here"),
    ("", "no t given"),
]
