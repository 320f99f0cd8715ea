# Helpers shared by the predictor's fast and slow rhythm channels
# (cabinet/fastrhythm.py, cabinet/slowrhythm.py): the period pick on an AMDF
# (average magnitude difference function) and 31-bit-safe ratios.


def pm(a, b):
    """1000 * a // b for 0 <= a, 0 < b, without leaving 31 bits."""
    if b <= 0:
        return 1000 if a > 0 else 0
    while a >= 0x100000:
        a >>= 1
        b >>= 1
    if b <= 0:
        return 1000
    return 1000 * a // b


def first_dip(d, n, mean):
    """Index of the period in an AMDF d[0..n-1]: the first local minimum
    below 3/8 of the mean, else the deepest; -1 if there is no signal."""
    if mean <= 0:
        return -1
    thr = mean * 3 >> 3
    for j in range(n):
        dj = d[j]
        if dj < thr and (j == 0 or dj <= d[j - 1]) and (j == n - 1 or dj <= d[j + 1]):
            return j
    best = 0
    for j in range(1, n):
        if d[j] < d[best]:
            best = j
    return best


def bits(n):
    # int.bit_length() is not in every MicroPython build.
    b = 0
    while n:
        n >>= 1
        b += 1
    return b
