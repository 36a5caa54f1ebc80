# Fanout at a fixed 5,000 events/s, the same offered load for every system: publish-to-deliver latency (ms, log scale): drawn by bench/compare/report.py from fanout_latency.dat
set terminal pngcairo size 1100,560 font ",10" noenhanced
set output 'fanout_latency.png'
set style data histogram
set style histogram errorbars gap 1 lw 1
set boxwidth 0.9
set key outside right top noautotitle
set grid ytics
set datafile missing "-"
set xtics nomirror
set bars front
set label "herald 27213d1 · 2026-12-05 18:30 UTC · full; 3 run(s) · bar: median over the runs, whisker: min–max" at screen 0.01, screen 0.015 font ",9"
set title "Fanout at a fixed 5,000 events/s, the same offered load for every system:\npublish-to-deliver latency (ms, log scale)"
set bmargin at screen 0.130
set ylabel "ms"
set logscale y
set yrange [0.1:*]
set format y "%g"
plot 'fanout_latency.dat' index 0 using 2:3:4:xtic(1) title "Herald p50" lc rgb "#bcbddc" fs solid 0.85 border -1, \
     '' index 0 using 5:6:7:xtic(1) title "NATS JetStream p50" lc rgb "#a6dba0" fs solid 0.85 border -1, \
     '' index 0 using 8:9:10:xtic(1) title "Redis Streams p50" lc rgb "#fdd0a2" fs solid 0.85 border -1, \
     '' index 0 using 11:12:13:xtic(1) title "Herald p99" lc rgb "#54278f" fs solid 0.85 border -1, \
     '' index 0 using 14:15:16:xtic(1) title "NATS JetStream p99" lc rgb "#1b9e77" fs solid 0.85 border -1, \
     '' index 0 using 17:18:19:xtic(1) title "Redis Streams p99" lc rgb "#e6550d" fs solid 0.85 border -1
