install.packages("x")
