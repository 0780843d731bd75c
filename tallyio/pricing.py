"""What tokens are worth in WETH-wei: the profit token of a pair and the gas a strategy charges.

Strategies pay gas in ETH and earn in whatever token a trade ends in, so every net profit needs a
price. ``price_table`` reads prices from a pools table's ``token_*`` arrays (the bundled feeds ship
them) and from a strategy's ``weth`` / ``prices`` options; ``PriceTable`` answers the two questions
the strategies ask. The compiled screens (``tallyio.amm.ArbitrageScreen`` / ``SandwichScreen``) read
the same table once, at load, into per-pool arrays.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any, Mapping

import numpy as np

from tallyio.record import address_bytes, u256_column_to_ints

__all__ = ["PriceTable", "parse_price", "price_table"]


class PriceTable:
    """What a token is worth in WETH-wei, to charge gas (paid in ETH) against a profit in it.

    The profit token of a pair is WETH when the pair holds it, else the pair's token0 (lower
    address) if priced, else token1 if priced; a pair with neither priced is not traded.
    ``prices`` map a 20-byte token to a positive ``Fraction`` of WETH-wei per smallest unit.
    """

    def __init__(self, weth: bytes | None, prices: Mapping[bytes, Fraction] | None = None):
        self.weth = weth
        self.prices = dict(prices or {})
        if weth is not None:
            self.prices[weth] = Fraction(1)

    def profit_token(self, token0: bytes, token1: bytes) -> bytes | None:
        """The token a trade on the pair ``(token0, token1)`` takes its profit in, or None."""
        if self.weth in (token0, token1):
            return self.weth
        for t in (token0, token1):
            if t in self.prices:
                return t
        return None

    def gas_cost(self, token: bytes, gas_wei: int) -> int:
        """Gas in ``token``'s smallest unit, rounded up (a cost is never understated):
        ``ceil(gas_wei * den / num)`` for the price ``num/den``. Raises ``KeyError`` for an
        unpriced token."""
        p = self.prices[token]
        return -(-(gas_wei * p.denominator) // p.numerator)


def parse_price(token: Any, value: Any) -> Fraction:
    """A price option value: an int, a ``Fraction``, or a ``"num/den"`` string, positive.

    Raises ``ValueError`` naming ``token`` and the value otherwise (floats are refused: a price
    must be exact).
    """
    try:
        if isinstance(value, bool) or isinstance(value, float):
            raise TypeError
        p = Fraction(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise ValueError(f"prices[{token!r}] must be a positive int, Fraction or 'num/den' string, "
                         f"got {value!r}") from None
    if p <= 0:
        raise ValueError(f"prices[{token!r}] must be positive, got {value!r}")
    return p


def price_table(table: Mapping[str, np.ndarray], weth: Any = None, prices: Any = None) -> PriceTable:
    """Prices from the table's ``token_*`` arrays (``token_address[0]`` is WETH), then options.

    ``weth`` (an address) overrides the table's WETH; ``prices`` (a mapping of address to price,
    see ``parse_price``) adds to or overrides the table's prices. Tokens whose table price has a
    zero numerator or denominator are unpriced. Raises ``ValueError`` naming a bad option.
    """
    found: dict[bytes, Fraction] = {}
    w = None
    if "token_address" in table:
        toks = [bytes(a) for a in np.asarray(table["token_address"], dtype=np.uint8).reshape(-1, 20)]
        w = toks[0] if toks else None
        if "token_price_num" in table and "token_price_den" in table:
            for t, n, d in zip(toks, u256_column_to_ints(table["token_price_num"]),
                               u256_column_to_ints(table["token_price_den"])):
                if n > 0 and d > 0:
                    found[t] = Fraction(n, d)
    if weth is not None:
        try:
            w = address_bytes(weth)
        except (ValueError, TypeError):
            raise ValueError(f"weth must be a 20-byte address, got {weth!r}") from None
    if prices is not None:
        if not isinstance(prices, Mapping):
            raise ValueError(f"prices must be a mapping of token address to price, got {prices!r}")
        for tok, val in prices.items():
            try:
                key = address_bytes(tok)
            except (ValueError, TypeError):
                raise ValueError(f"prices key must be a 20-byte address, got {tok!r}") from None
            found[key] = parse_price(tok, val)
    return PriceTable(w, found)
