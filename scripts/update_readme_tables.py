"""Rewrite the README's policy options tables from the policies' declarations.

Run after adding or changing a built-in policy: ``.venv/bin/python scripts/update_readme_tables.py``.
tests/test_declarations.py fails while the README and the declarations disagree.
"""

from __future__ import annotations

from pathlib import Path

from ado_ray.policies import options_markdown, policy_class, policy_names

README = Path(__file__).resolve().parents[1] / "README.md"


def main() -> None:
    # The built-ins, in the registry's order: no list of names to keep in step here.
    names = [n for n in policy_names() if policy_class(n).__module__.startswith("ado_ray.")]
    block = "\n\n".join(
        f"<!-- options:{n} -->\n{options_markdown(n)}\n<!-- /options -->" for n in names
    )
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- options:")
    end = text.rindex("<!-- /options -->") + len("<!-- /options -->")
    README.write_text(text[:start] + block + text[end:], encoding="utf-8")
    print(f"README: options tables for {', '.join(names)}")


if __name__ == "__main__":
    main()
