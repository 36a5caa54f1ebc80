# Resources of the log server (the log of 100 B events): drawn by bench/compare/report.py from resources.dat
set terminal pngcairo size 1100,560 font ",10" noenhanced
set output 'resources.png'
set style data histogram
set style histogram errorbars gap 1 lw 1
set boxwidth 0.9
set key outside right top noautotitle
set grid ytics
set datafile missing "-"
set xtics nomirror
set bars front
set label "herald 27213d1 · 2026-12-05 18:30 UTC · full; 3 run(s) · bar: median over the runs, whisker: min–max" at screen 0.01, screen 0.015 font ",9"
set multiplot layout 1,2 title "Resources of the log server (the log of 100 B events)" margins 0.07, 0.78, 0.130, 0.88 spacing 0.1
set title "peak RSS (VmHWM) of the log server"
set ylabel "MiB"
unset logscale y
set yrange [0:*]
set format y "%g"
plot 'resources.dat' index 0 using 2:3:4:xtic(1) title "Herald async" lc rgb "#807dba" fs solid 0.85 border -1, \
     '' index 0 using 5:6:7:xtic(1) title "NATS JetStream" lc rgb "#1b9e77" fs solid 0.85 border -1, \
     '' index 0 using 8:9:10:xtic(1) title "Redis everysec" lc rgb "#fdb863" fs solid 0.85 border -1
unset label
set title "disk per event, 2 s after the build"
set ylabel "bytes per event"
unset logscale y
set yrange [0:*]
set format y "%g"
plot 'resources.dat' index 1 using 2:3:4:xtic(1) title "Herald async" lc rgb "#807dba" fs solid 0.85 border -1, \
     '' index 1 using 5:6:7:xtic(1) title "NATS JetStream" lc rgb "#1b9e77" fs solid 0.85 border -1, \
     '' index 1 using 8:9:10:xtic(1) title "Redis everysec" lc rgb "#fdb863" fs solid 0.85 border -1
unset multiplot
