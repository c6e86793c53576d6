"""Independent references for lib/indicators.js (tests/indicators_test.ts).

Reads {"close": [...]} as JSON on stdin; prints one JSON object of columns (null
where undefined) from two packages that share no code with ours:
- `ta` (pandas): SMA(20), Bollinger Bands (20, 2, population sigma);
- TA-Lib: SMA(20) and SMA(200), EMA(9), EMA(20) and RSI(14), which `ta` defines
  differently (its EMA and RSI start the smoothing at the first close, not at the
  SMA of the first period), and BBANDS(20, 2) again.
Versions are pinned in tests/helpers/requirements.txt; .ci/run installs them.
"""

import json
import math
import sys

import numpy as np
import pandas as pd
import talib
from ta.trend import SMAIndicator
from ta.volatility import BollingerBands


def column(values):
    return [None if math.isnan(v) else float(v) for v in values]


def main():
    close = json.load(sys.stdin)["close"]
    series = pd.Series(close, dtype="float64")
    array = np.asarray(close, dtype="float64")
    bands = BollingerBands(series, window=20, window_dev=2)
    upper, middle, lower = talib.BBANDS(array, timeperiod=20, nbdevup=2, nbdevdn=2, matype=0)
    out = {
        "ta_sma20": column(SMAIndicator(series, window=20).sma_indicator()),
        "ta_bb_middle": column(bands.bollinger_mavg()),
        "ta_bb_upper": column(bands.bollinger_hband()),
        "ta_bb_lower": column(bands.bollinger_lband()),
        "talib_sma20": column(talib.SMA(array, timeperiod=20)),
        "talib_sma200": column(talib.SMA(array, timeperiod=200)),
        "talib_ema20": column(talib.EMA(array, timeperiod=20)),
        "talib_ema9": column(talib.EMA(array, timeperiod=9)),
        "talib_rsi14": column(talib.RSI(array, timeperiod=14)),
        "talib_bb_upper": column(upper),
        "talib_bb_middle": column(middle),
        "talib_bb_lower": column(lower),
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
