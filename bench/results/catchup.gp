# Catch-up: reading the whole log from its first event: drawn by bench/compare/report.py from catchup.dat
set terminal pngcairo size 1100,560 font ",10" noenhanced
set output 'catchup.png'
set style data histogram
set style histogram errorbars gap 1 lw 1
set boxwidth 0.9
set key outside right top noautotitle
set grid ytics
set datafile missing "-"
set xtics nomirror
set bars front
set label "herald 27213d1 · 2026-12-05 18:30 UTC · full; 3 run(s) · bar: median over the runs, whisker: min–max" at screen 0.01, screen 0.015 font ",9"
set title "Catch-up: reading the whole log from its first event"
set bmargin at screen 0.130
set ylabel "million events/s"
unset logscale y
set yrange [0:*]
set format y "%g"
plot 'catchup.dat' index 0 using 2:3:4:xtic(1) title "Herald async" lc rgb "#807dba" fs solid 0.85 border -1, \
     '' index 0 using 5:6:7:xtic(1) title "NATS JetStream" lc rgb "#1b9e77" fs solid 0.85 border -1, \
     '' index 0 using 8:9:10:xtic(1) title "Redis everysec" lc rgb "#fdb863" fs solid 0.85 border -1, \
     '' index 0 using 11:12:13:xtic(1) title "raw RocksDB iteration (limit)" lc rgb "#969696" fs solid 0.85 border -1
