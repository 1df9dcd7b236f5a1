# shellcheck shell=bash
# The measuring and reporting helpers benches/compare.sh and benches/trees.sh
# (standalone) share, sourced after benches/lib.sh and after START is set:
#
#   add KEY VALUE        record one round's figure (a number, else the run stops)
#   t=$(now); ...; since "$t"          seconds, 4 decimals
#   ev FORMAT EXPRESSION              awk arithmetic, printf-formatted
#   stat3 KEY / med KEY               "median min max" / the median of a key
#   grp N                             an integer with thousands separators
#   target GOAL MEASURED NUM DEN OP G a row of TARGETS: the ratio of the
#                                     medians and the per-round ratios

declare -A vals
log() { printf '[%5.0fs] %s\n' "$(awk -v a="$START" -v b="$EPOCHREALTIME" 'BEGIN{print b-a}')" "$*" >&2; }
add() { # key value
  case "$2" in ''|*[!0-9.e+-]*) echo "$ME: $1 gave '$2'" >&2; exit 1;; esac
  vals[$1]="${vals[$1]:-} $2"
}
now() { echo "$EPOCHREALTIME"; }
ev() { awk "BEGIN {printf \"$1\", $2}"; }    # ev FORMAT EXPRESSION
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.4f", b-a}'; }
stat3() { # key -> "median min max"
  tr ' ' '\n' <<<"${vals[$1]:-}" | grep -v '^$' | sort -g |
    awk '{a[NR]=$1} END {if (!NR) {print "nan nan nan"; exit} m = NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; print m, a[1], a[NR]}'
}
med() { stat3 "$1" | cut -d' ' -f1; }
grp() { # integer with thousands separators
  LC_ALL=C printf '%.0f\n' "$1" | sed -e ':a' -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|,\)/\1,\2\3/' -e 'ta'
}
TARGETS=()
paired() { # NUM-key DEN-key [op goal] -> "lo hi met count" of the per-round ratios
  paste -d' ' <(tr ' ' '\n' <<<"${vals[$1]}" | grep -v '^$') <(tr ' ' '\n' <<<"${vals[$2]}" | grep -v '^$') |
    awk -v op="${3:-}" -v g="${4:-0}" '{x = $1 / $2; if (NR == 1 || x < lo) lo = x; if (NR == 1 || x > hi) hi = x
      if ((op == ">=" && x >= g) || (op == "<=" && x <= g)) m++}
      END {print lo, hi, m + 0, NR}'
}
# A target: its ratio is median(NUM) / median(DEN); the per-round ratios (NUM and
# DEN of the same round, measured minutes apart at most) show how steady it is.
target() { # goal-text measured-text NUM-key DEN-key op goal
  local r ok pr
  r=$(ev '%.6f' "$(med "$3") / $(med "$4")")
  ok=$(awk -v r="$r" -v g="$6" -v op="$5" 'BEGIN {print ((op == ">=" && r >= g) || (op == "<=" && r <= g)) ? "**met**" : "missed"}')
  pr=$(paired "$3" "$4" "$5" "$6" | awk '{printf "%.2f–%.2f× (%d of %d met)", $1, $2, $3, $4}')
  TARGETS+=("| $1 | $2 | $(ev '%.2f' "$r")× | $pr | $ok |")
}
