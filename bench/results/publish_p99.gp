set terminal pngcairo size 900,480 font ",10"
set output '/tmp/run2/publish_p99.png'
set title "ACK latency p99 (ms, log scale)"
set ylabel "ms"
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside right top
set grid ytics
set datafile missing "-"
set yrange [1:*]
set logscale y
set xtics nomirror
set format y "%g"
colors = "#3f007d #d95f02 #e7298a #807dba #1b9e77 #fdb863 #f1a1c8"
plot for [i=2:8] '/tmp/run2/publish_p99.dat' using i:xtic(1) title columnheader(i)     lc rgb word(colors, i - 1)
