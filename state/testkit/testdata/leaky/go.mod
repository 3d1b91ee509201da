module example.test/leaky

go 1.26
