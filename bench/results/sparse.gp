# Sparse read: one topic's 1,000 events among the log (ms, best of 3 reads; log scale): drawn by bench/compare/report.py from sparse.dat
set terminal pngcairo size 1100,560 font ",10" noenhanced
set output 'sparse.png'
set style data histogram
set style histogram errorbars gap 1 lw 1
set boxwidth 0.9
set key outside right top noautotitle
set grid ytics
set datafile missing "-"
set xtics nomirror
set bars front
set label "herald 27213d1 · 2026-12-05 18:30 UTC · full; 3 run(s) · bar: median over the runs, whisker: min–max" at screen 0.01, screen 0.015 font ",9"
set label "Redis \"stream per topic\": the application writes every event twice (the log and its topic's stream); \"scan of the log\": one stream alone." at screen 0.01, screen 0.050 font ",9"
set title "Sparse read: one topic's 1,000 events among the log (ms, best of 3 reads; log scale)"
set bmargin at screen 0.165
set ylabel "ms"
set logscale y
set yrange [1:*]
set format y "%g"
plot 'sparse.dat' index 0 using 2:3:4:xtic(1) title "raw: RocksDB 1,000 point Gets" lc rgb "#969696" fs solid 0.85 border -1, \
     '' index 0 using 5:6:7:xtic(1) title "Herald: READ of the topic" lc rgb "#54278f" fs solid 0.85 border -1, \
     '' index 0 using 8:9:10:xtic(1) title "Herald: REPLAY with the topic as prefix" lc rgb "#9e9ac8" fs solid 0.85 border -1, \
     '' index 0 using 11:12:13:xtic(1) title "NATS: ordered consumer, subject filter" lc rgb "#1b9e77" fs solid 0.85 border -1, \
     '' index 0 using 14:15:16:xtic(1) title "Redis: stream per topic" lc rgb "#e6550d" fs solid 0.85 border -1, \
     '' index 0 using 17:18:19:xtic(1) title "Redis: scan of the log" lc rgb "#fdae6b" fs solid 0.85 border -1
