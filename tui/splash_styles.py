"""The splash's styles, taken from Textual's own first frame (default theme).

Written by `python -m tests.splash_support > tui/splash_styles.py`; do not edit.
"""

# name: (foreground, background, bold, italic), as Textual renders it in truecolor
LOOKS = {
    "header": (None, "#242f38", False, False),
    "header_title": ("#e0e0e0", "#242f38", True, False),
    "header_name": ("#58d1eb", "#242f38", True, False),
    "header_loading": ("#e0e0e0", "#242f38", False, True),
    "tree_border": ("#0178d4", "#272727", False, False),
    "tree": ("#e0e0e0", "#272727", False, False),
    "tree_cursor": ("#ddedf9", "#0178d4", True, False),
    "detail_border": ("#092b45", "#121212", False, False),
    "detail": (None, "#121212", False, False),
    "detail_loading": ("#e0e0e0", "#121212", False, True),
    "status": (None, "#121212", False, False),
    "footer_key": ("#ffa62b", "#242f38", True, False),
    "footer_text": ("#e0e0e0", "#242f38", False, False),
    "footer_separator": ("#495259", "#242f38", False, False),
}
# name: SGR parameters in each colour system, as Rich writes them for Textual
SGR = {
    "truecolor": {
        "header": "48;2;36;47;56",
        "header_title": "1;38;2;224;224;224;48;2;36;47;56",
        "header_name": "1;38;2;88;209;235;48;2;36;47;56",
        "header_loading": "3;38;2;224;224;224;48;2;36;47;56",
        "tree_border": "38;2;1;120;212;48;2;39;39;39",
        "tree": "38;2;224;224;224;48;2;39;39;39",
        "tree_cursor": "1;38;2;221;237;249;48;2;1;120;212",
        "detail_border": "38;2;9;43;69;48;2;18;18;18",
        "detail": "48;2;18;18;18",
        "detail_loading": "3;38;2;224;224;224;48;2;18;18;18",
        "status": "48;2;18;18;18",
        "footer_key": "1;38;2;255;166;43;48;2;36;47;56",
        "footer_text": "38;2;224;224;224;48;2;36;47;56",
        "footer_separator": "38;2;73;82;89;48;2;36;47;56",
    },
    "256": {
        "header": "48;5;17",
        "header_title": "1;38;5;253;48;5;17",
        "header_name": "1;38;5;80;48;5;17",
        "header_loading": "3;38;5;253;48;5;17",
        "tree_border": "38;5;32;48;5;235",
        "tree": "38;5;253;48;5;235",
        "tree_cursor": "1;38;5;195;48;5;32",
        "detail_border": "38;5;17;48;5;233",
        "detail": "48;5;233",
        "detail_loading": "3;38;5;253;48;5;233",
        "status": "48;5;233",
        "footer_key": "1;38;5;214;48;5;17",
        "footer_text": "38;5;253;48;5;17",
        "footer_separator": "38;5;239;48;5;17",
    },
    "standard": {
        "header": "100",
        "header_title": "1;97;100",
        "header_name": "1;96;100",
        "header_loading": "3;97;100",
        "tree_border": "36;40",
        "tree": "97;40",
        "tree_cursor": "1;97;46",
        "detail_border": "90;40",
        "detail": "40",
        "detail_loading": "3;97;40",
        "status": "40",
        "footer_key": "1;91;100",
        "footer_text": "97;100",
        "footer_separator": "90;100",
    },
}
