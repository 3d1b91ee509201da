package commands

//go:generate go run ./gendocs ..

// GeneratedFiles returns every generated file by its path in the repository.
func GeneratedFiles() (map[string]string, error) {
	files := map[string]string{}
	// Each under the name its shell looks for when installed as is.
	for shell, name := range map[string]string{"bash": "p2ptls.bash", "zsh": "_p2ptls", "fish": "p2ptls.fish"} {
		s, err := Completion(shell)
		if err != nil {
			return nil, err
		}
		files["completions/"+name] = s
	}
	man, err := ManPage()
	if err != nil {
		return nil, err
	}
	files["man/p2ptls.1"] = man
	return files, nil
}
