set terminal pngcairo size 900,480 font ",10"
set output '/tmp/run2/publish_sync.png'
set title "Acknowledged publish, sync class (events/s)"
set ylabel "events/s"
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside right top
set grid ytics
set datafile missing "-"
set yrange [0:*]

set xtics nomirror
set format y "%.0s%c"
colors = "#3f007d #d95f02 #e7298a #969696"
plot for [i=2:5] '/tmp/run2/publish_sync.dat' using i:xtic(1) title columnheader(i)     lc rgb word(colors, i - 1)
